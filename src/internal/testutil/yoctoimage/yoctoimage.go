// Package yoctoimage builds miniature Yocto images for tests and benchmarks: it compiles small
// C/C++ programs, a shared library and a kernel-module-like object with -g, splits and strips
// them the way OE-core's package.bbclass does for each PACKAGE_DEBUG_SPLIT_STYLE, and packs the
// rootfs and the -dbg rootfs (IMAGE_GEN_DEBUGFS) with GNU tar in a chosen compression. It
// returns the tarballs and what a symbol uploader should find in them. Only tests import it.
//
// What is reproduced from OE-core (meta/lib/oe/package.py, meta/classes-recipe/image_types.bbclass,
// meta/lib/oe/rootfs.py), see internal/symbols/debugpkg/README.md for the details:
//   - splitdebuginfo: `objcopy --only-keep-debug FILE DEBUGFILE`, then
//     `objcopy --add-gnu-debuglink DEBUGFILE FILE`;
//   - runstrip: kernel modules `strip --strip-debug --remove-section=.comment
//     --remove-section=.note --preserve-dates`; ".so" shared libraries `strip
//     --remove-section=.comment --remove-section=.note --strip-unneeded`; other executables and
//     shared objects `strip --remove-section=.comment --remove-section=.note`;
//   - the debug file of DIR/NAME is DIR/.debug/NAME (debug, debug-with-srcpkg,
//     debug-without-src) or /usr/lib/debug/DIR/NAME.debug (debug-file-directory); hard links
//     share one debug file per directory named after the first link (the debug symlinks
//     package.py means to make for symlinks are in practice never made);
//   - minidebuginfo (DISTRO_FEATURES): the FUNC symbols not in .dynsym, xz-compressed, added as
//     .gnu_debugdata;
//   - the -dbg rootfs holds the debug files and /usr/src/debug (sources) only;
//   - `tar --sort=name --format=posix --pax-option=delete=atime,delete=ctime --numeric-owner
//     -cf X.tar -C ROOTFS .`, then gzip -9 -n, pbzip2 (bzip2 if absent), xz --check=crc32
//     --threads, zstd --threads -3.
package yoctoimage

import (
	"bytes"
	"crypto/sha1"
	"debug/elf"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
)

// Split styles (PACKAGE_DEBUG_SPLIT_STYLE).
const (
	StyleWithSrcpkg  = "debug-with-srcpkg" // OE-core's default
	StyleDebug       = "debug"
	StyleWithoutSrc  = "debug-without-src"
	StyleFileDirName = "debug-file-directory"
)

// Styles lists every split style.
var Styles = []string{StyleWithSrcpkg, StyleDebug, StyleWithoutSrc, StyleFileDirName}

// Compression is the suffix of an image tarball: how it is compressed.
type Compression string

// Compressions Yocto's IMAGE_FSTYPES can ask for (tar.lz4 aside).
const (
	None  Compression = "tar"
	Gzip  Compression = "tar.gz"
	Bzip2 Compression = "tar.bz2"
	XZ    Compression = "tar.xz"
	Zstd  Compression = "tar.zst"
)

// Compressions lists every compression.
var Compressions = []Compression{None, Gzip, Bzip2, XZ, Zstd}

// Kind is what a program is compiled into.
type Kind string

// Kinds of program.
const (
	Exec      Kind = "pie"         // position-independent executable
	ExecNoPIE Kind = "exec"        // executable linked at a fixed address
	Shared    Kind = "shared"      // shared library
	Module    Kind = "relocatable" // kernel-module-like: gcc -c, ld -r --build-id
)

// Program is one ELF file of the image.
type Program struct {
	Path    string   // image path, "/usr/bin/crasher"
	Kind    Kind     // what to compile
	Sources []string // file names under testdata/symbols, or absolute paths
	Libs    []string // image paths of Shared programs to link against
	CFlags  []string // extra compiler flags
	Soname  string   // Shared: DT_SONAME (default: the file name)

	NoBuildID  bool // link with --build-id=none
	Unreadable bool // packed with mode 000
	Unsplit    bool // shipped with its debug info (INHIBIT_PACKAGE_DEBUG_SPLIT)
	// DebugWithoutBuildID drops the build-id note from the debug file (before the debuglink is
	// added, so its CRC stays right): the debug file can be paired by path or debuglink only.
	DebugWithoutBuildID bool
	// DebugDir installs the debug file in this image directory instead of the style's place:
	// with DebugWithoutBuildID, only the .gnu_debuglink name can pair it.
	DebugDir string
	// Copies adds that many copies of the split program (and of its debug file) with build-ids
	// of their own, named by CopyPath: many ELF files for the price of one compilation.
	Copies int
}

// CopyPath is the image path of copy i of a program: the same name in a directory of its own
// ("/usr/bin/c0007/big"), so that the copied .gnu_debuglink names its debug file.
func CopyPath(p string, i int) string {
	dir, base := path.Split(p)
	return path.Join(dir, fmt.Sprintf("c%04d", i), base)
}

// Spec is an image: its programs, links and other files.
type Spec struct {
	Programs  []Program
	HardLinks map[string]string // new image path -> image path of an existing file
	Symlinks  map[string]string // image path -> link target, as written in the link
	Files     map[string]string // image path -> contents of a non-ELF file (mode 0755)
	// MiniDebugInfo adds .gnu_debugdata to the split executables and libraries, as
	// DISTRO_FEATURES "minidebuginfo" does.
	MiniDebugInfo bool
}

// Default is the standard miniature image: a shared library and a PIE using it, a non-PIE, a
// C++ program, a kernel module, a program with a hard link, symlinks, a non-ELF script, an
// unreadable ELF, an ELF without build-id, an unsplit ELF, and debug files only the path or
// the .gnu_debuglink can pair.
func Default() Spec {
	return Spec{
		Programs: []Program{
			{Path: "/usr/lib/libcrash.so.1.0.0", Kind: Shared, Sources: []string{"libcrash.c"}, Soname: "libcrash.so.1"},
			{Path: "/usr/bin/crasher", Kind: Exec, Sources: []string{"crasher.c"}, Libs: []string{"/usr/lib/libcrash.so.1.0.0"}},
			{Path: "/usr/sbin/nopie", Kind: ExecNoPIE, Sources: []string{"nopie.c"}},
			{Path: "/usr/bin/cxx", Kind: Exec, Sources: []string{"cxx.cpp"}},
			{Path: "/lib/modules/6.6.0-yocto-standard/extra/memfault_test.ko", Kind: Module, Sources: []string{"module.c"}},
			{Path: "/usr/bin/plain", Kind: Exec, Sources: []string{"plain.c"}},
			{Path: "/usr/bin/nobuildid", Kind: Exec, Sources: []string{"plain.c"}, CFlags: []string{"-DPLAIN_GREETING=\"nobuildid\""}, NoBuildID: true},
			{Path: "/usr/sbin/secret", Kind: Exec, Sources: []string{"plain.c"}, CFlags: []string{"-DPLAIN_GREETING=\"secret\""}, Unreadable: true},
			{Path: "/usr/libexec/unsplit", Kind: Exec, Sources: []string{"plain.c"}, CFlags: []string{"-DPLAIN_GREETING=\"unsplit\""}, Unsplit: true},
			{Path: "/usr/bin/bypath", Kind: Exec, Sources: []string{"plain.c"}, CFlags: []string{"-DPLAIN_GREETING=\"bypath\""}, DebugWithoutBuildID: true},
			{Path: "/usr/bin/bylink", Kind: Exec, Sources: []string{"plain.c"}, CFlags: []string{"-DPLAIN_GREETING=\"bylink\""}, DebugWithoutBuildID: true, DebugDir: "/usr/share/bylink-debug"},
		},
		HardLinks: map[string]string{
			"/usr/bin/plain-again": "/usr/bin/plain",
			"/bin/plain":           "/usr/bin/plain",
		},
		Symlinks: map[string]string{
			"/usr/lib/libcrash.so.1": "libcrash.so.1.0.0",
			"/usr/lib/libcrash.so":   "/usr/lib/libcrash.so.1",
			"/bin/crasher":           "../usr/bin/crasher",
			"/usr/bin/dangling":      "nowhere",
		},
		Files: map[string]string{
			"/etc/init.d/crasher": "#!/bin/sh\nexec /usr/bin/crasher \"$@\"\n",
			"/etc/hostname":       "miniature\n",
		},
	}
}

// Build is a set of compiled, unstripped programs, shared by the images made from it.
type Build struct {
	Dir      string
	spec     Spec
	compiled map[string]string // image path -> unstripped file
}

// Image is one image: its tarballs, the trees they were packed from, and what is in them.
type Image struct {
	Rootfs, Dbg       string // tarballs
	RootDir, DbgDir   string // the trees packed (the unreadable program is readable here)
	Style             string
	Compression       Compression
	ELFs              []Expect // one per ELF file of the rootfs (hard links once), sorted by path
	NonELF            []string // image paths of the rootfs's regular non-ELF files
	DanglingSymlinks  []string
	DebugFiles        []string // image paths of the -dbg rootfs's debug files (regular files)
	SourceFilesInDbg  []string // image paths under /usr/src/debug
	UnreadablePaths   []string
	ProgramsWithDebug int // programs that should give a symbol file
}

// Expect is what an uploader should find for one ELF file of the rootfs.
type Expect struct {
	Path       string   // image path (the first of its hard links in name order)
	Links      []string // other hard links and the symlinks resolving to it, sorted
	Kind       Kind
	BuildID    string // from readelf -n; "" when none
	Unreadable bool
	HasDebug   bool   // the rootfs file itself has DWARF (unsplit)
	DebugFile  string // image path of its debug file in the -dbg rootfs; "" when none
	PairedBy   string // how it can be paired: build-id, path, debuglink; "" when not
	Original   string // the unstripped file (host path), for comparisons
	Stripped   string // the file as shipped in the rootfs (host path)
}

// Expect returns the expectation for an image path (a link's too), nil when there is none.
func (img *Image) Expect(p string) *Expect {
	for i := range img.ELFs {
		e := &img.ELFs[i]
		if e.Path == p {
			return e
		}
		for _, l := range e.Links {
			if l == p {
				return e
			}
		}
	}
	return nil
}

// HostPath is where an image path of the rootfs is on disk.
func (img *Image) HostPath(p string) string { return filepath.Join(img.RootDir, filepath.FromSlash(p)) }

// SourceDir is testdata/symbols, found from the working directory (a package directory of the
// module).
func SourceDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "testdata", "symbols")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("yoctoimage: go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Need skips the test when a tool the builder runs is missing.
func Need(t testing.TB, tools ...string) {
	t.Helper()
	if len(tools) == 0 {
		tools = []string{"gcc", "g++", "ld", "objcopy", "strip", "readelf", "nm", "tar", "gzip", "bzip2", "xz", "zstd"}
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("yoctoimage: %s not installed", tool)
		}
	}
}

// Compile compiles every program of spec once, unstripped, into a directory of t.
func Compile(t testing.TB, spec Spec) *Build {
	t.Helper()
	Need(t)
	b := &Build{Dir: t.TempDir(), spec: spec, compiled: map[string]string{}}
	src := SourceDir(t)
	// Shared libraries first: programs link against them.
	progs := append([]Program(nil), spec.Programs...)
	sort.SliceStable(progs, func(i, j int) bool { return progs[i].Kind == Shared && progs[j].Kind != Shared })
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, len(progs))
	sem := make(chan struct{}, 2)
	for i, p := range progs {
		if p.Kind == Shared {
			out, err := b.compile(src, p)
			if err != nil {
				t.Fatalf("yoctoimage: %s: %v", p.Path, err)
			}
			b.compiled[p.Path] = out
			continue
		}
		wg.Add(1)
		go func(i int, p Program) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out, err := b.compile(src, p)
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", p.Path, err)
				return
			}
			mu.Lock()
			b.compiled[p.Path] = out
			mu.Unlock()
		}(i, p)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("yoctoimage: %v", err)
		}
	}
	return b
}

// Unstripped is the compiled, unstripped file of a program.
func (b *Build) Unstripped(imagePath string) string { return b.compiled[imagePath] }

func (b *Build) compile(srcDir string, p Program) (string, error) {
	out := filepath.Join(b.Dir, "build", strings.TrimPrefix(p.Path, "/"))
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	var srcs []string
	cxx := false
	for _, s := range p.Sources {
		if !filepath.IsAbs(s) {
			s = filepath.Join(srcDir, s)
		}
		if strings.HasSuffix(s, ".cpp") || strings.HasSuffix(s, ".cc") {
			cxx = true
		}
		srcs = append(srcs, s)
	}
	cc := "gcc"
	if cxx {
		cc = "g++"
	}
	buildID := "-Wl,--build-id=sha1"
	if p.NoBuildID {
		buildID = "-Wl,--build-id=none"
	}
	flags := append([]string{"-g", "-O1", "-I", srcDir}, p.CFlags...)
	switch p.Kind {
	case Module:
		var objs []string
		for i, s := range srcs {
			obj := fmt.Sprintf("%s.%d.o", out, i)
			if err := run("", cc, append(append([]string{}, flags...), "-c", "-fno-pie", "-o", obj, s)...); err != nil {
				return "", err
			}
			objs = append(objs, obj)
		}
		args := []string{"-r", "--build-id=sha1", "-o", out}
		if p.NoBuildID {
			args = []string{"-r", "-o", out}
		}
		return out, run("", "ld", append(args, objs...)...)
	case Shared:
		soname := p.Soname
		if soname == "" {
			soname = path.Base(p.Path)
		}
		args := append(flags, "-fPIC", "-shared", buildID, "-Wl,-soname,"+soname, "-o", out)
		return out, run("", cc, append(args, srcs...)...)
	case Exec, ExecNoPIE:
		args := append([]string{}, flags...)
		if p.Kind == Exec {
			args = append(args, "-fPIE", "-pie")
		} else {
			args = append(args, "-fno-pie", "-no-pie")
		}
		args = append(args, buildID, "-o", out)
		args = append(args, srcs...)
		for _, lib := range p.Libs {
			f, ok := b.compiled[lib]
			if !ok {
				return "", fmt.Errorf("library %s is not a Shared program of the spec", lib)
			}
			args = append(args, f)
		}
		return out, run("", cc, args...)
	}
	return "", fmt.Errorf("unknown kind %q", p.Kind)
}

// debugPath is where OE-core's splitdebuginfo puts the debug file of image path src.
func debugPath(style, src string) string {
	dir, base := path.Dir(src), path.Base(src)
	if style == StyleFileDirName {
		return path.Join("/usr/lib/debug", dir, base+".debug")
	}
	return path.Join(dir, ".debug", base)
}

// Image splits, strips and packs the build into an image of the given style and compression,
// in a new directory of t.
func (b *Build) Image(t testing.TB, style string, comp Compression) *Image {
	t.Helper()
	known := false
	for _, s := range Styles {
		known = known || s == style
	}
	if !known {
		t.Fatalf("yoctoimage: unknown split style %q", style)
	}
	dir := t.TempDir()
	img := &Image{
		RootDir: filepath.Join(dir, "rootfs"), DbgDir: filepath.Join(dir, "rootfs-dbg"),
		Style: style, Compression: comp,
		Rootfs: filepath.Join(dir, "image."+string(comp)), Dbg: filepath.Join(dir, "image-dbg."+string(comp)),
	}
	host := func(root, p string) string { return filepath.Join(root, filepath.FromSlash(p)) }
	for _, d := range []string{img.RootDir, img.DbgDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	progs := map[string]Program{}
	for _, p := range b.spec.Programs {
		progs[p.Path] = p
		dst := host(img.RootDir, p.Path)
		if err := copyFile(b.compiled[p.Path], dst); err != nil {
			t.Fatal(err)
		}
	}
	// splitdebuginfo + runstrip + minidebuginfo, per program.
	debugOf := map[string]string{} // image path -> image path of its debug file
	var copies []copyOf
	for _, p := range b.spec.Programs {
		if p.Unsplit {
			continue
		}
		file := host(img.RootDir, p.Path)
		dbg := debugPath(style, p.Path)
		if p.DebugDir != "" {
			dbg = path.Join(p.DebugDir, path.Base(dbg))
		}
		dbgFile := host(img.DbgDir, dbg)
		if err := os.MkdirAll(filepath.Dir(dbgFile), 0o755); err != nil {
			t.Fatal(err)
		}
		must(t, run("", "objcopy", "--only-keep-debug", file, dbgFile))
		if p.DebugWithoutBuildID {
			must(t, run("", "objcopy", "--remove-section=.note.gnu.build-id", dbgFile))
		}
		must(t, run("", "objcopy", "--add-gnu-debuglink", dbgFile, file))
		switch {
		case p.Kind == Module:
			must(t, run("", "strip", "--strip-debug", "--remove-section=.comment", "--remove-section=.note", "--preserve-dates", file))
		case p.Kind == Shared && strings.Contains(p.Path, ".so"):
			must(t, run("", "strip", "--remove-section=.comment", "--remove-section=.note", "--strip-unneeded", file))
		default:
			must(t, run("", "strip", "--remove-section=.comment", "--remove-section=.note", file))
		}
		if b.spec.MiniDebugInfo && p.Kind != Module {
			must(t, injectMiniDebugInfo(file, dbgFile))
		}
		debugOf[p.Path] = dbg
		for i := 1; i <= p.Copies; i++ {
			cp := CopyPath(p.Path, i)
			cdbg := debugPath(style, cp)
			must(t, copyWithBuildID(file, dbgFile, host(img.RootDir, cp), host(img.DbgDir, cdbg), i))
			copies = append(copies, copyOf{path: cp, of: p.Path, dbg: cdbg})
		}
	}
	// Hard links: the rootfs gets the links; the -dbg rootfs one debug file per directory,
	// named after the first link (package.py: "Hardlink our debug symbols").
	linkNames := sortedKeys(b.spec.HardLinks)
	for _, l := range linkNames {
		target := b.spec.HardLinks[l]
		dst := host(img.RootDir, l)
		must(t, os.MkdirAll(filepath.Dir(dst), 0o755))
		must(t, os.Link(host(img.RootDir, target), dst))
		if dbg, ok := debugOf[target]; ok && progs[target].DebugDir == "" {
			fpath := debugPath(style, path.Join(path.Dir(l), path.Base(target)))
			if _, err := os.Stat(host(img.DbgDir, fpath)); err != nil {
				must(t, os.MkdirAll(filepath.Dir(host(img.DbgDir, fpath)), 0o755))
				must(t, os.Link(host(img.DbgDir, dbg), host(img.DbgDir, fpath)))
				// The debug file's name is the first of its links, as tar lists them.
				if fpath < dbg {
					debugOf[target] = fpath
				}
			}
		}
	}
	// Symlinks. package.py means to give symlinks to split ELFs a debug symlink, but it stats
	// the debug symlink's own path before creating it and skips when that is missing, so in
	// practice the -dbg rootfs has none: neither has ours.
	for _, l := range sortedKeys(b.spec.Symlinks) {
		dst := host(img.RootDir, l)
		must(t, os.MkdirAll(filepath.Dir(dst), 0o755))
		must(t, os.Symlink(b.spec.Symlinks[l], dst))
	}
	for _, f := range sortedKeys(b.spec.Files) {
		dst := host(img.RootDir, f)
		must(t, os.MkdirAll(filepath.Dir(dst), 0o755))
		must(t, os.WriteFile(dst, []byte(b.spec.Files[f]), 0o755))
		img.NonELF = append(img.NonELF, f)
	}
	// Sources for the styles that keep them (copydebugsources), in the -dbg rootfs.
	if style != StyleWithoutSrc {
		seen := map[string]bool{}
		for _, p := range b.spec.Programs {
			for _, s := range p.Sources {
				name := path.Join("/usr/src/debug/memfault-test/1.0", filepath.Base(s))
				if seen[name] {
					continue
				}
				seen[name] = true
				if !filepath.IsAbs(s) {
					s = filepath.Join(SourceDir(t), s)
				}
				must(t, copyFile(s, host(img.DbgDir, name)))
				img.SourceFilesInDbg = append(img.SourceFilesInDbg, name)
			}
		}
		sort.Strings(img.SourceFilesInDbg)
	}
	b.expect(t, img, progs, debugOf)
	for _, c := range copies {
		e := *img.Expect(c.of)
		e.Path, e.Links, e.DebugFile, e.Stripped = c.path, nil, c.dbg, img.HostPath(c.path)
		id, err := readelfBuildID(e.Stripped)
		must(t, err)
		e.BuildID = id
		img.ELFs = append(img.ELFs, e)
		img.ProgramsWithDebug++
	}
	sort.Slice(img.ELFs, func(i, j int) bool { return img.ELFs[i].Path < img.ELFs[j].Path })
	img.DebugFiles = nil
	must(t, filepath.WalkDir(img.DbgDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel := "/" + filepath.ToSlash(strings.TrimPrefix(p, img.DbgDir+string(filepath.Separator)))
		if !strings.HasPrefix(rel, "/usr/src/debug/") {
			img.DebugFiles = append(img.DebugFiles, rel)
		}
		return nil
	}))
	sort.Strings(img.DebugFiles)

	var unreadable []string
	for _, p := range b.spec.Programs {
		if p.Unreadable {
			unreadable = append(unreadable, "."+p.Path)
			img.UnreadablePaths = append(img.UnreadablePaths, p.Path)
		}
	}
	must(t, pack(img.RootDir, img.Rootfs, comp, unreadable))
	must(t, pack(img.DbgDir, img.Dbg, comp, nil))
	return img
}

// expect fills img's expectations from the trees just made.
func (b *Build) expect(t testing.TB, img *Image, progs map[string]Program, debugOf map[string]string) {
	t.Helper()
	// Group hard links: the image path first in name order is the file's path.
	groups := map[string][]string{}
	for p := range progs {
		groups[p] = []string{p}
	}
	for l, target := range b.spec.HardLinks {
		groups[target] = append(groups[target], l)
	}
	for _, l := range sortedKeys(b.spec.Symlinks) {
		r := resolve(b.spec.Symlinks, l)
		if target, ok := b.spec.HardLinks[r]; ok {
			r = target
		}
		if _, ok := groups[r]; ok {
			groups[r] = append(groups[r], l)
		} else if _, ok := b.spec.Files[r]; !ok {
			img.DanglingSymlinks = append(img.DanglingSymlinks, l)
		}
	}
	for prog, names := range groups {
		p := progs[prog]
		var hard []string
		hard = append(hard, prog)
		for _, n := range names[1:] {
			if _, isLink := b.spec.Symlinks[n]; !isLink {
				hard = append(hard, n)
			}
		}
		sort.Strings(hard)
		e := Expect{
			Path: hard[0], Kind: p.Kind, Unreadable: p.Unreadable, HasDebug: p.Unsplit,
			Original: b.compiled[prog], Stripped: img.HostPath(prog),
		}
		for _, n := range names {
			if n != e.Path {
				e.Links = append(e.Links, n)
			}
		}
		sort.Strings(e.Links)
		id, err := readelfBuildID(b.compiled[prog])
		if err != nil {
			t.Fatal(err)
		}
		e.BuildID = id
		if dbg, ok := debugOf[prog]; ok {
			e.DebugFile = dbg
			switch {
			case id == "":
			case !p.DebugWithoutBuildID:
				e.PairedBy = "build-id"
			case p.DebugDir == "":
				e.PairedBy = "path"
			default:
				e.PairedBy = "debuglink"
			}
		}
		if e.BuildID != "" && (e.HasDebug || e.PairedBy != "") {
			img.ProgramsWithDebug++
		}
		img.ELFs = append(img.ELFs, e)
	}
	sort.Slice(img.ELFs, func(i, j int) bool { return img.ELFs[i].Path < img.ELFs[j].Path })
}

// resolve follows the spec's symlinks from l to a non-symlink image path ("" when dangling or
// looping). Targets are relative to the link's directory unless absolute.
func resolve(links map[string]string, l string) string {
	cur := l
	for i := 0; i < 16; i++ {
		target, ok := links[cur]
		if !ok {
			return cur
		}
		if !strings.HasPrefix(target, "/") {
			target = path.Join(path.Dir(cur), target)
		}
		cur = path.Clean(target)
	}
	return ""
}

type copyOf struct{ path, of, dbg string }

// copyWithBuildID copies a split program and its debug file, giving both a new build-id
// (derived from the old one and i) and the stripped copy's .gnu_debuglink the new debug
// file's CRC.
func copyWithBuildID(file, dbg, dstFile, dstDbg string, i int) error {
	bin, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	deb, err := os.ReadFile(dbg)
	if err != nil {
		return err
	}
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	note := f.Section(".note.gnu.build-id")
	link := f.Section(".gnu_debuglink")
	if note == nil || link == nil || note.Size < 16+8 {
		return fmt.Errorf("%s: copies need a build-id and a debuglink", file)
	}
	old := bin[note.Offset+16 : note.Offset+note.Size] // past namesz, descsz, type, "GNU\0"
	sum := sha1.Sum(append(append([]byte{}, old...), byte(i), byte(i>>8)))
	id := sum[:len(old)]
	if len(old) > len(sum) || bytes.Count(deb, old) != 1 || bytes.Count(bin, old) != 1 {
		return fmt.Errorf("%s: build-id not found once in the binary and its debug file", file)
	}
	bin = bytes.Replace(bin, old, id, 1)
	deb = bytes.Replace(deb, old, id, 1)
	data, err := link.Data()
	if err != nil {
		return err
	}
	n := bytes.IndexByte(data, 0)
	crcOff := int(link.Offset) + (n+1+3)&^3
	if n < 0 || crcOff+4 > len(bin) {
		return fmt.Errorf("%s: bad .gnu_debuglink", file)
	}
	f.ByteOrder.PutUint32(bin[crcOff:], crc32.ChecksumIEEE(deb))
	for dst, data := range map[string][]byte{dstFile: bin, dstDbg: deb} {
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(dst, data, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// GenerateSource writes a C file of n functions, each with a struct type of its own, into dir
// and returns its path: about 600 bytes of DWARF per function at -O1 -g. It is for images
// with a realistic amount of debug data (benchmarks).
func GenerateSource(t testing.TB, dir, name string, n int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("#include <stddef.h>\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `struct rec%[1]d { int id; long count; double ratio; const char *name; struct rec%[1]d *next; unsigned char flags[%[2]d]; short kind; };
int __attribute__((noinline)) walk%[1]d(struct rec%[1]d *r, int depth)
{
	int acc = 0;
	for (struct rec%[1]d *p = r; p != NULL && depth-- > 0; p = p->next) {
		acc += p->id * %[3]d + (int)p->count;
		if (p->ratio > %[1]d.5)
			acc ^= p->flags[0];
	}
	return acc + %[1]d;
}
`, i, 4+i%13, i%7+1)
	}
	b.WriteString("int main(int argc, char **argv)\n{\n\t(void)argv;\n\tint s = 0;\n")
	for i := 0; i < n; i += 50 {
		fmt.Fprintf(&b, "\t{ struct rec%[1]d r = {0}; r.id = argc; s += walk%[1]d(&r, argc); }\n", i)
	}
	b.WriteString("\treturn s & 1;\n}\n")
	p := filepath.Join(dir, name)
	must(t, os.WriteFile(p, []byte(b.String()), 0o644))
	return p
}

var buildIDLine = regexp.MustCompile(`Build ID: ([0-9a-f]+)`)

// readelfBuildID asks readelf (the oracle, not our parser) for a file's GNU build-id.
func readelfBuildID(file string) (string, error) {
	out, err := exec.Command("readelf", "-n", file).Output()
	if err != nil {
		return "", fmt.Errorf("readelf -n %s: %w", file, err)
	}
	if m := buildIDLine.FindSubmatch(out); m != nil {
		return string(m[1]), nil
	}
	return "", nil
}

// injectMiniDebugInfo follows package.py's inject_minidebuginfo.
func injectMiniDebugInfo(file, debugfile string) error {
	out, err := exec.Command("readelf", "-W", "-S", debugfile).Output()
	if err != nil {
		return fmt.Errorf("readelf -S %s: %w", debugfile, err)
	}
	var remove []string
	for _, line := range strings.Split(string(out), "\n") {
		i := strings.Index(line, "]")
		if i < 0 {
			continue
		}
		f := strings.Fields(line[i+1:])
		if len(f) < 7 || strings.HasPrefix(f[0], ".debug_") {
			continue
		}
		if !strings.Contains(f[6], "A") && (f[1] == "PROGBITS" || f[1] == "NOTE" || f[1] == "NOBITS") {
			remove = append(remove, "--remove-section="+f[0])
		}
	}
	dyn := map[string]bool{}
	out, err = exec.Command("nm", "-D", file, "--format=posix", "--defined-only").Output()
	if err != nil {
		return fmt.Errorf("nm -D %s: %w", file, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			dyn[f[0]] = true
		}
	}
	out, err = exec.Command("nm", debugfile, "--format=sysv", "--defined-only").Output()
	if err != nil {
		return fmt.Errorf("nm %s: %w", debugfile, err)
	}
	var keep bytes.Buffer
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, "|")
		if len(f) < 7 {
			continue
		}
		if name := strings.TrimSpace(f[0]); strings.TrimSpace(f[3]) == "FUNC" && !dyn[name] {
			keep.WriteString(name + "\n")
		}
	}
	if keep.Len() == 0 {
		return nil
	}
	mini := file + ".minidebug"
	defer os.Remove(mini)
	defer os.Remove(mini + ".xz")
	defer os.Remove(mini + ".symlist")
	if err := os.WriteFile(mini+".symlist", keep.Bytes(), 0o644); err != nil {
		return err
	}
	args := append([]string{"-S"}, remove...)
	args = append(args, "--keep-symbols="+mini+".symlist", debugfile, mini)
	if err := run("", "objcopy", args...); err != nil {
		return err
	}
	if err := run("", "xz", "--keep", mini); err != nil {
		return err
	}
	return run("", "objcopy", "--add-section", ".gnu_debugdata="+mini+".xz", file)
}

// pack tars dir as image_types.bbclass does and compresses it. The members listed in
// unreadable (tar names, "./usr/...") are appended afterwards with mode 000, the way pseudo
// would have recorded them.
func pack(dir, out string, comp Compression, unreadable []string) error {
	tarFile := out
	if comp != None {
		tarFile = strings.TrimSuffix(out, "."+strings.TrimPrefix(string(comp), "tar."))
	}
	args := []string{"--sort=name", "--format=posix", "--pax-option=delete=atime,delete=ctime", "--numeric-owner", "--owner=0", "--group=0", "--mtime=@1700000000"}
	for _, u := range unreadable {
		args = append(args, "--exclude="+u)
	}
	if err := run("", "tar", append(args, "-cf", tarFile, "-C", dir, ".")...); err != nil {
		return err
	}
	if len(unreadable) > 0 {
		args := []string{"--format=posix", "--pax-option=delete=atime,delete=ctime", "--numeric-owner", "--owner=0", "--group=0", "--mtime=@1700000000", "--mode=a-rwx", "-rf", tarFile, "-C", dir}
		if err := run("", "tar", append(args, unreadable...)...); err != nil {
			return err
		}
	}
	var cmd []string
	switch comp {
	case None:
		return nil
	case Gzip:
		cmd = []string{"gzip", "-f", "-9", "-n", "-c"}
	case Bzip2:
		cmd = []string{"bzip2", "-c"}
		if _, err := exec.LookPath("pbzip2"); err == nil {
			cmd = []string{"pbzip2", "-c", "-p2"}
		}
	case XZ:
		cmd = []string{"xz", "-c", "-6", "--threads=2", "--check=crc32"}
	case Zstd:
		cmd = []string{"zstd", "-q", "-c", "--threads=2", "-3"}
	default:
		return fmt.Errorf("unknown compression %q", comp)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	c := exec.Command(cmd[0], append(cmd[1:], tarFile)...)
	c.Stdout = f
	var stderr bytes.Buffer
	c.Stderr = &stderr
	err = c.Run()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(cmd, " "), err, stderr.Bytes())
	}
	return os.Remove(tarFile)
}

func run(dir, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o755)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("yoctoimage: %v", err)
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
