#!/usr/bin/env python3
"""case-json.py: write the case.json of one corpus case/arch (called by make-corpus.sh).

Reads the core's notes itself (PT_NOTE: NT_PRSTATUS, NT_SIGINFO, NT_FILE, ...), the GNU
build-ids of the case's binaries and of every system library named in NT_FILE (as found
in the host or the cross sysroot, and as found in the core's own first pages through
`eu-unstrip -n --core`), and adds the hand-written expectation for the crashing thread.
Standard library only.
"""
import argparse
import hashlib
import json
import os
import re
import struct
import subprocess
import sys

SIGNALS = {4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE", 11: "SIGSEGV"}
MACHINES = {3: "EM_386", 40: "EM_ARM", 62: "EM_X86_64", 183: "EM_AARCH64"}
CORE_NOTES = {1: "NT_PRSTATUS", 2: "NT_PRFPREG", 3: "NT_PRPSINFO", 6: "NT_AUXV",
              0x46494c45: "NT_FILE", 0x53494749: "NT_SIGINFO"}
LINUX_NOTES = {0x202: "NT_X86_XSTATE", 0x205: "NT_X86_XSAVE_LAYOUT", 0x400: "NT_ARM_VFP",
               0x401: "NT_ARM_TLS", 0x402: "NT_ARM_HW_BREAK", 0x403: "NT_ARM_HW_WATCH",
               0x404: "NT_ARM_SYSTEM_CALL", 0x405: "NT_ARM_SVE", 0x406: "NT_ARM_PAC_MASK",
               0x409: "NT_ARM_TAGGED_ADDR_CTRL", 0x40a: "NT_ARM_PAC_ENABLED_KEYS"}


class Elf:
    """Just enough ELF to list program headers and notes (little-endian only: every
    corpus arch is little-endian; anything else is refused)."""

    def __init__(self, data):
        if data[:4] != b"\x7fELF":
            raise ValueError("not ELF")
        if data[5] != 1:
            raise ValueError("not little-endian")
        self.data = data
        self.is64 = data[4] == 2
        self.e_type, self.e_machine = struct.unpack_from("<HH", data, 16)
        if self.is64:
            phoff, = struct.unpack_from("<Q", data, 32)
            phentsize, phnum = struct.unpack_from("<HH", data, 54)
        else:
            phoff, = struct.unpack_from("<I", data, 28)
            phentsize, phnum = struct.unpack_from("<HH", data, 42)
        self.phdrs = []
        for i in range(phnum):
            o = phoff + i * phentsize
            if self.is64:
                p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from("<IIQQQQ", data, o)
            else:
                p_type, p_offset, p_vaddr, _, p_filesz = struct.unpack_from("<IIIII", data, o)
            self.phdrs.append((p_type, p_offset, p_vaddr, p_filesz))

    def _notes_in(self, o, end):
        while o + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", self.data, o)
            o += 12
            name = self.data[o:o + namesz].rstrip(b"\0").decode("ascii", "replace")
            o += (namesz + 3) & ~3
            desc = self.data[o:o + descsz]
            o += (descsz + 3) & ~3
            yield name, ntype, desc

    def notes(self):
        """Notes of the PT_NOTE segments."""
        for p_type, off, _, size in self.phdrs:
            if p_type == 4:  # PT_NOTE
                yield from self._notes_in(off, off + size)

    def section_notes(self):
        """Notes of the SHT_NOTE sections (the Go linker puts .note.gnu.build-id in a
        loaded segment but in no PT_NOTE)."""
        d = self.data
        if self.is64:
            shoff, = struct.unpack_from("<Q", d, 40)
            shentsize, shnum = struct.unpack_from("<HH", d, 58)
        else:
            shoff, = struct.unpack_from("<I", d, 32)
            shentsize, shnum = struct.unpack_from("<HH", d, 46)
        for i in range(shnum):
            o = shoff + i * shentsize
            if self.is64:
                _, sh_type, _, _, sh_offset, sh_size = struct.unpack_from("<IIQQQQ", d, o)
            else:
                _, sh_type, _, _, sh_offset, sh_size = struct.unpack_from("<IIIIII", d, o)
            if sh_type == 7:  # SHT_NOTE
                yield from self._notes_in(sh_offset, sh_offset + sh_size)


def build_id(path, where=None):
    """The GNU build-id from the PT_NOTE segments, else from the note sections;
    where (a dict) gets "segment" or "section" for the place it was found."""
    try:
        with open(path, "rb") as f:
            e = Elf(f.read())
    except (OSError, ValueError):
        return None
    for kind, notes in (("segment", e.notes), ("section", e.section_notes)):
        for name, ntype, desc in notes():
            if name == "GNU" and ntype == 3:
                if where is not None:
                    where["build_id_found_in"] = kind
                return desc.hex()
    return None


def parse_core(path):
    with open(path, "rb") as f:
        data = f.read()
    e = Elf(data)
    word = "<Q" if e.is64 else "<I"
    wsz = 8 if e.is64 else 4
    counts, lwps, files, sig = {}, [], [], {}
    for name, ntype, desc in e.notes():
        table = CORE_NOTES if name == "CORE" else LINUX_NOTES if name == "LINUX" else {}
        key = table.get(ntype, "%s/0x%x" % (name, ntype))
        counts[key] = counts.get(key, 0) + 1
        if name == "CORE" and ntype == 1:
            # elf_prstatus: siginfo (3 ints), cursig (short + pad), sigpend, sighold
            # (words), then pid; see include/linux/elfcore.h
            o = 12 + 4 + 2 * wsz
            lwps.append(struct.unpack_from("<i", desc, o)[0])
        elif name == "CORE" and ntype == 0x53494749:
            signo, errno_, code = struct.unpack_from("<iii", desc, 0)
            sig = {"signo": signo, "name": SIGNALS.get(signo, str(signo)), "code": code}
            if signo in (4, 7, 8, 11):
                sig["fault_address"] = hex(struct.unpack_from(word, desc, 16 if e.is64 else 12)[0])
        elif name == "CORE" and ntype == 0x46494c45:
            count, = struct.unpack_from(word, desc, 0)
            names = desc[2 * wsz + 3 * wsz * count:].split(b"\0")
            for i in range(count):
                start, end, pgoff = struct.unpack_from("<" + ("QQQ" if e.is64 else "III"), desc, 2 * wsz + 3 * wsz * i)
                files.append((start, end, pgoff, names[i].decode()))
    return {
        "elf_class": 64 if e.is64 else 32,
        "machine": MACHINES.get(e.e_machine, str(e.e_machine)),
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "notes": dict(sorted(counts.items())),
        "threads": len(lwps),
        "lwps": lwps,
        "signal": sig,
        "files": files,
    }


def core_build_ids(modules_txt, files):
    """Build-ids read from the core's own pages by `eu-unstrip -n --core` (lines
    START+SIZE BUILDID@ADDR FILE DEBUG NAME), keyed by NT_FILE path through the
    module's start address (the start of the path's mapping at file offset 0)."""
    by_start = {}
    for line in open(modules_txt):
        f = line.split()
        if len(f) >= 2 and f[1] != "-":
            by_start[int(f[0].split("+")[0], 16)] = f[1].split("@")[0]
    ids = {}
    for start, _, pgoff, path in files:
        if pgoff == 0 and path not in ids and start in by_start:
            ids[path] = by_start[start]
    return ids


def dpkg_owner(path):
    for p in (path, os.path.realpath(path)):
        r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
        if r.returncode == 0:
            pkg = r.stdout.split(": ")[0]
            ver = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True).stdout
            return pkg, ver
    return None, None


def F(function, obj, role="app", inlined=False, tailcall=False):
    d = {"function": function, "object": obj, "role": role}
    if inlined:
        d["inlined"] = True
    if tailcall:
        d["tailcall"] = True
    return d


def expectations(case, arch):
    """What a person expects on each thread, innermost frame first (see README.md:
    "expect")."""
    exe = case
    libc = "libc.so.6"
    sizet = "unsigned int" if arch == "armhf" else "unsigned long"
    if case == "c-o2-inline":
        return {
            "crash_thread": {"signal": "SIGSEGV", "frames": [
                F("load_sample", exe, inlined=True),
                F("sum_window", exe, inlined=True),
                F("checksum", exe),
                F("main", exe)]},
            "other_threads": [{"frames": [
                F("read", libc, "lib"), F("blocked_reader", exe), F("start_thread", libc, "lib")]}],
        }
    if case == "cpp-exception":
        return {
            "crash_thread": {"signal": "SIGABRT", "frames": [
                F("raise", libc, "lib"), F("abort", libc, "lib"),
                F("__gnu_cxx::__verbose_terminate_handler", "libstdc++.so.6", "lib"),
                F("std::terminate", "libstdc++.so.6", "lib"),
                F("__cxa_throw", "libstdc++.so.6", "lib"),
                F("Parser<int>::parse_field", exe),
                F("Parser<int>::sum", exe),
                F("main", exe)]},
            "other_threads": [],
            "note": "parse_field takes a size_t (%s)" % sizet,
        }
    if case == "cpp-segv-template":
        ns = "(anonymous namespace)::"
        lam = ns + "run(" + ns + "Node<long>*, long)::{lambda(long, " + ns + "Node<long> const*)#1}"
        return {
            "crash_thread": {"signal": "SIGSEGV", "frames": [
                F(lam + "::operator()", exe, inlined=True),
                F(ns + "Walker<" + ns + "Node<long> >::fold<" + lam + ">", exe),
                F(ns + "run", exe),
                F("main", exe)]},
            "other_threads": [],
        }
    if case == "rust-panic-abort":
        c = "rust_panic_abort::"
        return {
            "crash_thread": {"signal": "SIGABRT", "frames": [
                F("abort", libc, "lib"),
                F("std::process::abort", exe, "lib"),
                F("core::panicking::panic_fmt", exe, "lib"),
                F(c + "validate::{closure#0}<i64>", exe, inlined=True),
                F(c + "validate<i64>", exe),
                F(c + "process_batch", exe),
                F(c + "run", exe),
                F(c + "main", exe)]},
            "other_threads": [{"name": "waiter", "frames": [
                F("std::sync::mpsc::Receiver<()>::recv<()>", exe, "lib"),
                F(c + "main::{closure#0}", exe),
                F("start_thread", libc, "lib")]}],
        }
    if case == "go-crash":
        return {
            "crash_thread": {"signal": "SIGABRT", "frames": [
                F("runtime.raise", exe, "lib"),
                F("runtime.dieFromSignal", exe, "lib"),
                F("runtime.crash", exe, "lib"),
                F("runtime.fatalpanic", exe, "lib"),
                F("runtime.gopanic", exe, "lib"),
                F("runtime.panicmem", exe, "lib"),
                F("runtime.sigpanic", exe, "lib"),
                F("main.(*node).payload", exe),
                F("main.sumPayloads", exe),
                F("main.sumPayloads", exe),
                F("main.sumPayloads", exe),
                F("main.main", exe)]},
            "other_threads": [],
            "note": "GOTRACEBACK=crash: the runtime prints the panic, then raises SIGABRT on the "
                    "faulting M (first delivered to the Go handler, which re-raises it with the "
                    "default action), so the crashing thread's stack holds a signal frame. "
                    "The other threads are runtime Ms (sysmon, idle Ms in futex sleeps); the "
                    "waiter goroutine is parked on a channel and has no thread of its own.",
        }
    if case in ("c-static", "c-static-pie"):
        return {
            "crash_thread": {"signal": "SIGSEGV", "frames": [
                F("parse_entry", exe), F("load_table", exe), F("main", exe)]},
            "other_threads": [{"frames": [
                F("nanosleep", exe, "lib"), F("sleeper", exe), F("start_thread", exe, "lib")]}],
        }
    if case == "c-separate-debug":
        lib = "libfilter.so"
        return {
            "crash_thread": {"signal": "SIGSEGV", "frames": [
                F("filter_limit", lib), F("check_item", exe), F("filter_apply", lib),
                F("run_pipeline", exe), F("main", exe)]},
            "other_threads": [],
        }
    if case == "c-tailcalls":
        def parked(leaf, tails, worker):
            return {"frames": [F("read", libc, "lib"), F("park", exe), F(leaf, exe)] +
                    [F(f, exe, tailcall=True) for f in tails] + [F(worker, exe)]}
        return {
            "crash_thread": {"signal": "SIGSEGV", "frames": [
                F("m_leaf", exe), F("m_top", exe, tailcall=True), F("main", exe)]},
            "other_threads": [
                parked("u_leaf", ["u_mid", "u_top"], "unique_worker"),
                parked("s_leaf", ["s_join"], "split_worker"),
                parked("i_leaf", [], "indirect_worker"),
                parked("c_leaf", ["c_ping"], "cycle_worker"),
                {"frames": [F("read", libc, "lib"), F("libc_worker", exe)]},
            ],
            "note": "functions that left by a tail call have no frame on the stack; gdb adds "
                    "them from DWARF call sites when the chain of tail calls is determined: "
                    "u_mid and u_top (one chain), s_join only (s_odd or s_even: the middle is "
                    "ambiguous), nothing for i_top (indirect jump), c_ping once (several "
                    "chains through the c_ping/c_pong recursion end alike), nothing for x_top "
                    "(split into hot and cold parts, the call into it has two targets and the "
                    "second is no function's entry)",
        }
    raise SystemExit("no expectation for " + case)


def strip_groups(s, open_, close):
    out, depth = [], 0
    for ch in s:
        if ch == open_:
            depth += 1
        elif ch == close and depth:
            depth -= 1
        elif not depth:
            out.append(ch)
    return "".join(out)


def norm_name(name):
    """Template arguments and parameter lists removed, glibc's internal alias prefixes
    (__GI_, __libc_) and leading underscores dropped: enough to tell whether gdb and
    the expectation name the same function."""
    n = strip_groups(strip_groups(name, "(", ")"), "<", ">").strip()
    return re.sub(r"^(?:__GI_|__libc_|_)+", "", n)


def same_function(expected, got):
    e, g = norm_name(expected), norm_name(got)
    return e == g or e.endswith("::" + g) or g.endswith("::" + e)


def gdb_threads(path):
    """{lwp: [function name, ...]} from `thread apply all bt` output."""
    threads, cur = {}, None
    for line in open(path, errors="replace"):
        m = re.match(r"^Thread \d+ \(.*?LWP (\d+)\)\)?:", line)
        if m:
            cur = threads.setdefault(int(m.group(1)), [])
            continue
        m = re.match(r"^#\d+\s+(?:0x[0-9a-f]+ in )?(.*)$", line.rstrip("\n"))
        if cur is None or not m:
            continue
        f = m.group(1)
        f = re.sub(r" (at \S+:\d+|from \S+)$", "", f)
        if f.endswith(")"):  # drop the argument list: the last balanced (...)
            depth = 0
            for i in range(len(f) - 1, -1, -1):
                depth += {")": 1, "(": -1}.get(f[i], 0)
                if depth == 0:
                    f = f[:i].rstrip()
                    break
        cur.append(f)
    return threads


def missing_frames(expected, frames):
    """Expected frames not found, in order, among gdb's frames of one thread."""
    missing, i = [], 0
    for e in expected:
        j = next((k for k in range(i, len(frames)) if same_function(e["function"], frames[k])), None)
        if j is None:
            missing.append(e["function"])
        else:
            i = j + 1
    return missing


def gdb_check(expect, gdb_txt, crash_lwp):
    threads = gdb_threads(gdb_txt)
    res = {"threads": len(threads)}
    res["crash_thread_missing"] = missing_frames(expect["crash_thread"]["frames"], threads.get(crash_lwp, []))
    others = [t for lwp, t in threads.items() if lwp != crash_lwp]
    res["other_threads_missing"] = [
        min((missing_frames(o["frames"], t) for t in others), key=len, default=[f["function"] for f in o["frames"]])
        for o in expect["other_threads"]]
    return res


INFO = {
    "c-o2-inline": ("C", ["-O2", "-g", "-pthread", "PIE", "dynamic"], ["c-o2-inline/main.c"]),
    "cpp-exception": ("C++", ["-O2", "-g", "PIE", "dynamic", "libstdc++"], ["cpp-exception/main.cpp"]),
    "cpp-segv-template": ("C++", ["-O2", "-g", "PIE", "dynamic", "libstdc++"], ["cpp-segv-template/main.cpp"]),
    "rust-panic-abort": ("Rust", ["-C panic=abort", "-C force-unwind-tables=yes", "-C debuginfo=2",
                                  "-C opt-level=1", "PIE", "dynamic (libc, libgcc_s)"], ["rust-panic-abort/main.rs"]),
    "go-crash": ("Go", ["-trimpath", "CGO_ENABLED=0", "static", "GOTRACEBACK=crash"], ["go-crash/main.go"]),
    "c-static": ("C", ["-O2", "-g", "-pthread", "-static", "non-PIE"], ["c-static/main.c"]),
    "c-static-pie": ("C", ["-O2", "-g", "-pthread", "-static-pie"], ["c-static/main.c"]),
    "c-tailcalls": ("C", ["-O2", "-g", "-pthread", "PIE", "dynamic"], ["c-tailcalls/main.c"]),
    "c-separate-debug": ("C", ["-O1", "-g", "PIE", "dynamic", "own shared library", "stripped + .gnu_debuglink"],
                         ["c-separate-debug/main.c", "c-separate-debug/filter.c", "c-separate-debug/filter.h"]),
}


def main():
    ap = argparse.ArgumentParser()
    for a in ("arch", "case", "core", "modules", "meta", "sysroot", "bindir", "outdir", "kernel"):
        ap.add_argument("--" + a, default="")
    args = ap.parse_args()
    core = parse_core(args.core)
    language, flags, sources = INFO[args.case]
    if args.arch == "armhf":
        flags = flags + (["GOARCH=arm GOARM=7 (A32 code)"] if language == "Go"
                         else ["Thumb-2 (the Debian armhf default; libc is Thumb-2 too)"])
    elif args.arch == "aarch64" and language == "Go":
        flags = flags + ["GOARCH=arm64"]
    with open(os.path.join(args.bindir, "build.txt")) as f:
        build_cmds = [l.rstrip("\n") for l in f]
    meta = open(args.meta).read().split()
    in_core = core_build_ids(args.modules, core["files"])

    # the case's own binaries: the ones whose NT_FILE path is under /<case>/
    binaries, libraries = [], []
    seen = []
    for _, _, _, p in core["files"]:
        if p not in seen:
            seen.append(p)
    for p in seen:
        base = os.path.basename(p)
        if p.startswith("/%s/" % args.case):
            stored = base + ".gz" if os.path.exists(os.path.join(args.outdir, base + ".gz")) else base
            b = {"file": stored, "path_in_core": p}
            b["build_id"] = build_id(os.path.join(args.bindir, base), b)
            b["build_id_in_core"] = in_core.get(p)
            if b["build_id_in_core"] and b["build_id_in_core"] != b["build_id"]:
                raise SystemExit("%s: build-id %s in the core, %s in the binary: rebuild the cores"
                                 % (p, b["build_id_in_core"], b["build_id"]))
            if os.path.exists(os.path.join(args.outdir, "stripped", base)):
                b["stripped"] = "stripped/" + base
                b["debug_file"] = "stripped/%s.debug" % base
                b["debuglink"] = base + ".debug"
            binaries.append(b)
        else:
            host = (args.sysroot or "") + p
            pkg, ver = dpkg_owner(host)
            libraries.append({"path_in_core": p, "host_path": host, "build_id": build_id(host),
                              "build_id_in_core": in_core.get(p), "package": pkg, "version": ver})
    out = {
        "case": args.case,
        "arch": args.arch,
        "machine": core["machine"],
        "elf_class": core["elf_class"],
        "language": language,
        "flags": flags,
        "sources": sources,
        "build": build_cmds,
        "kernel": args.kernel,
        "run": {"argv": ["/%s/%s" % (args.case, args.case)], "chroot": True,
                "env": {"GOTRACEBACK": "crash"}, "ulimit_s_kib": 256, "coredump_filter": "0x33",
                "core_pattern": "|savecore %p %e %s"},
        "core": {
            "file": "core.gz",
            "size": core["size"],
            "sha256": core["sha256"],
            "pid": int(meta[0]),
            "comm": meta[1],
            "signal": core["signal"],
            "threads": core["threads"],
            "crash_lwp": core["lwps"][0] if core["lwps"] else None,
            "lwps": core["lwps"],
            "notes": core["notes"],
            "nt_file_entries": len(core["files"]),
        },
        "binaries": binaries,
        "libraries": libraries,
        "gdb": {"command": "cmd.txt", "output": "gdb-full.txt"},
        "expect": expectations(args.case, args.arch),
    }
    out["gdb"]["expectation_check"] = gdb_check(out["expect"], os.path.join(args.outdir, "gdb-full.txt"),
                                                out["core"]["crash_lwp"])
    if args.case == "c-separate-debug":
        out["gdb"]["stripped_command"] = "cmd-stripped.txt"
        out["gdb"]["stripped_output"] = "gdb-stripped.txt"
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
