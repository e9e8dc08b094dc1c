package e2e

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/server/group"
	"meta-memfault-go/internal/testutil/gdbbt"
	"meta-memfault-go/internal/testutil/kerneltest"
)

// corpusLibs are where the libraries of each architecture's cores are found on this machine.
var corpusLibs = map[string][]string{
	"x86_64":  {"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/usr/lib/debug/.build-id"},
	"aarch64": {"/usr/aarch64-linux-gnu/lib"},
	"armhf":   {"/usr/arm-linux-gnueabihf/lib"},
}

// symbolsOf copies a corpus case's binaries (decompressing NAME.gz) into a directory for
// --symbols-dir.
func symbolsOf(t *testing.T, dir string) string {
	out := t.TempDir()
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		name := d.Name()
		if name == "core.gz" || strings.HasSuffix(name, ".txt") || strings.HasSuffix(name, ".json") {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		dst := filepath.Join(out, rel)
		os.MkdirAll(filepath.Dir(dst), 0o755)
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		var r io.Reader = in
		if strings.HasSuffix(name, ".gz") {
			zr, err := gzip.NewReader(in)
			if err != nil {
				return err
			}
			r = zr
			dst = strings.TrimSuffix(dst, ".gz")
		}
		f, err := os.Create(dst)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(f, r)
		return err
	})
	require.NoError(t, err)
	return out
}

// TestFidelityCorpus runs every core of testdata/corpus (C at -O2 with inlining, C++ with
// exceptions and templates, Rust, Go, static and static-pie, separate debug files; x86_64,
// aarch64, armhf) through capture, upload and analysis with both strategies, and compares the
// server's frames with gdb's on the full core (gdb-full.txt), thread by thread, to gdb's depth.
func TestFidelityCorpus(t *testing.T) {
	root := filepath.Join(kerneltest.ModuleRoot(t), "testdata", "corpus")
	cases, err := filepath.Glob(filepath.Join(root, "*", "*", "case.json"))
	require.NoError(t, err)
	require.NotEmpty(t, cases)
	bin := buildServer(t)
	for _, cj := range cases {
		dir := filepath.Dir(cj)
		arch := filepath.Base(dir)
		name := filepath.Base(filepath.Dir(dir)) + "/" + arch
		t.Run(name, func(t *testing.T) {
			var meta struct {
				Case string `json:"case"`
			}
			b, err := os.ReadFile(cj)
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(b, &meta))
			args := []string{"--symbols-dir", symbolsOf(t, dir)}
			for _, l := range corpusLibs[arch] {
				if _, err := os.Stat(l); err == nil {
					args = append(args, "--symbols-dir", l)
				}
			}
			s := startServer(t, bin, args...)
			full := corpusCore(t, filepath.Base(filepath.Dir(dir)), arch)
			for i, strategy := range []string{"threads", "kernel_selection"} {
				persist := t.TempDir()
				capture(t, full, persist, strategy, "dev-"+strategy, "1.0")
				deliver(t, s, persist, "dev-"+strategy, "1.0")
				s.waitIssues(t, i+1)
			}
			issues := s.waitIssues(t, 2)
			if len(issues) != 1 {
				for _, is := range issues {
					var raw map[string]any
					s.get(t, fmt.Sprintf("/api/v1/issues/%d", is.ID), &raw)
					b, _ := json.MarshalIndent(raw["latest"].(map[string]any)["trace"].(map[string]any)["threads"].([]any)[0], "", " ")
					t.Logf("issue %d crashing thread: %.3000s", is.ID, b)
				}
			}
			require.Len(t, issues, 1, "both strategies give one issue: %+v", issues)
			raw, err := os.ReadFile(filepath.Join(dir, "gdb-full.txt"))
			require.NoError(t, err)
			want := gdbbt.Parse(string(raw))
			// gdb prints a function known only from a symbol table with its demangled
			// parameter list ("std::terminate()"); names compare without parameters.
			for i := range want {
				for j, f := range want[i].Frames {
					want[i].Frames[j] = group.Normalize(f)
				}
			}
			cores := s.allThreads(t, issues[0].ID)
			require.Len(t, cores, 2, "one core per capture strategy")
			for i, threads := range cores {
				got := toGDB(threads)
				w := withoutTrailingUnknown(want, got)
				if d := gdbbt.DiffPrefix(w, got); d != "" {
					t.Errorf("core %d: server frames differ from gdb's:\n%s", i, d)
				}
			}
		})
	}
}

// withoutTrailingUnknown drops the "??" frames that end a gdb backtrace past the point where
// the server's walk ended: gdb runs past the outermost frame of Go's system stacks into
// whatever the stack holds there, frames that name nothing.
func withoutTrailingUnknown(want, got []gdbbt.Thread) []gdbbt.Thread {
	n := map[string]int{}
	for _, th := range got {
		n[th.LWP] = len(th.Frames)
	}
	for i, th := range want {
		f := th.Frames
		for len(f) > n[th.LWP] && f[len(f)-1] == "??" {
			f = f[:len(f)-1]
		}
		want[i].Frames = f
	}
	return want
}
