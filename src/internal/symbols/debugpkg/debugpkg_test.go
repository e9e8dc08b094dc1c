package debugpkg

import (
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/testutil/yoctoimage"
)

var (
	buildOnce sync.Once
	built     *yoctoimage.Build
	buildDir  string
)

// defaultBuild compiles the default miniature image once for the package's tests.
func defaultBuild(t *testing.T) *yoctoimage.Build {
	t.Helper()
	yoctoimage.Need(t)
	if _, err := exec.LookPath("eu-unstrip"); err != nil {
		t.Skip("eu-unstrip (elfutils) not installed")
	}
	buildOnce.Do(func() {
		// Compile into a directory that outlives the first test; TestMain removes it.
		tb := &keepTB{T: t}
		built = yoctoimage.Compile(tb, yoctoimage.Default())
	})
	if built == nil {
		t.Fatal("the default image did not compile")
	}
	return built
}

// keepTB gives Compile a TempDir that outlives the test calling it.
type keepTB struct{ *testing.T }

func (k *keepTB) TempDir() string {
	d, err := os.MkdirTemp("", "yoctoimage-build-")
	if err != nil {
		k.Fatal(err)
	}
	buildDir = d
	return d
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// readelfSections is readelf's view of a file: section name -> type.
func readelfSections(t *testing.T, file string) map[string]string {
	t.Helper()
	out, err := exec.Command("readelf", "-W", "-S", file).Output()
	require.NoError(t, err, file)
	m := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		i := strings.Index(line, "]")
		if i < 0 || !strings.Contains(line[:i], "[") {
			continue
		}
		if f := strings.Fields(line[i+1:]); len(f) >= 2 {
			m[f[0]] = f[1]
		}
	}
	return m
}

var buildIDRe = regexp.MustCompile(`Build ID: ([0-9a-f]+)`)

func readelfBuildID(t *testing.T, file string) string {
	t.Helper()
	out, err := exec.Command("readelf", "-n", file).Output()
	require.NoError(t, err, file)
	if m := buildIDRe.FindSubmatch(out); m != nil {
		return string(m[1])
	}
	return ""
}

// sameSection checks that a section has the same bytes in two files.
func sameSection(t *testing.T, name, a, b string) {
	t.Helper()
	data := func(p string) []byte {
		f, err := elf.Open(p)
		require.NoError(t, err, p)
		defer f.Close()
		s := f.Section(name)
		require.NotNil(t, s, "%s has no %s", p, name)
		d, err := s.Data()
		require.NoError(t, err)
		return d
	}
	require.Equal(t, data(a), data(b), "%s differs between %s and %s", name, a, b)
}

// checkSymbolFile checks a recombined symbol file against readelf and the unstripped original.
func checkSymbolFile(t *testing.T, sym Symbol, e *yoctoimage.Expect) {
	t.Helper()
	secs := readelfSections(t, sym.File)
	require.Equal(t, "PROGBITS", secs[".debug_info"], "%s: .debug_info", sym.Path)
	require.Equal(t, "SYMTAB", secs[".symtab"], "%s: .symtab", sym.Path)
	require.Equal(t, "PROGBITS", secs[".eh_frame"], "%s: .eh_frame", sym.Path)
	require.Equal(t, "PROGBITS", secs[".text"], "%s: .text", sym.Path)
	require.Equal(t, e.BuildID, readelfBuildID(t, sym.File), sym.Path)
	for _, s := range []string{".text", ".eh_frame", ".debug_info", ".debug_line"} {
		sameSection(t, s, sym.File, e.Original)
	}
	fi, err := os.Stat(sym.File)
	require.NoError(t, err)
	require.Equal(t, fi.Size(), sym.Size)
}

// expectedStyle is what detection should find for an image of a style: debug and
// debug-with-srcpkg lay files out alike.
func expectedStyle(style string) string {
	if style == StyleDebug {
		return StyleWithSrcpkg
	}
	return style
}

// checkImage compares a Result with what the builder made.
func checkImage(t *testing.T, img *yoctoimage.Image, res *Result) {
	t.Helper()
	var paths []string
	for _, e := range img.ELFs {
		paths = append(paths, e.Path)
	}
	var got []string
	for _, e := range res.ELFs {
		got = append(got, e.Path)
	}
	require.Equal(t, paths, got, "every ELF once, under its first name")

	syms := map[string]Symbol{}
	for _, s := range res.Symbols {
		_, dup := syms[s.BuildID]
		require.False(t, dup, "build-id %s uploaded twice", s.BuildID)
		syms[s.BuildID] = s
	}
	require.Len(t, res.Symbols, img.ProgramsWithDebug)
	for i, info := range res.ELFs {
		e := img.ELFs[i]
		require.Equal(t, e.BuildID, info.BuildID, e.Path)
		require.Equal(t, string(e.Kind), info.Type, e.Path)
		require.Equal(t, "x86_64", info.Machine)
		require.Equal(t, e.Links, info.Links, e.Path)
		require.Equal(t, e.HasDebug, info.HasDebug, e.Path)
		require.Equal(t, e.PairedBy, info.PairedBy, e.Path)
		if e.PairedBy != "" {
			require.Equal(t, e.DebugFile, info.DebugFile, e.Path)
		}
		if e.BuildID == "" || (!e.HasDebug && e.PairedBy == "") {
			continue
		}
		sym, ok := syms[e.BuildID]
		require.True(t, ok, "no symbol file for %s", e.Path)
		require.Equal(t, e.Path, sym.Path)
		if e.HasDebug {
			require.Equal(t, SourceBinary, sym.Source, e.Path)
		} else {
			require.Equal(t, SourceUnstripped, sym.Source, e.Path)
		}
		checkSymbolFile(t, sym, &e)
	}

	want := map[string]string{}
	for _, e := range img.ELFs {
		if e.BuildID == "" {
			want[e.Path] = ReasonNoBuildID
		}
	}
	for _, p := range img.NonELF {
		want[p] = ReasonNotELF
	}
	gotSkipped := map[string]string{}
	for _, s := range res.Skipped {
		gotSkipped[s.Path] = s.Reason
	}
	require.Equal(t, want, gotSkipped)
}

func TestFromYocto(t *testing.T) {
	b := defaultBuild(t)
	for _, style := range yoctoimage.Styles {
		for _, comp := range yoctoimage.Compressions {
			t.Run(style+"/"+string(comp), func(t *testing.T) {
				img := b.Image(t, style, comp)
				tmp := t.TempDir()
				res, err := FromYocto(context.Background(), img.Rootfs, img.Dbg, Options{TmpDir: tmp, Concurrency: 2, Log: t.Logf})
				require.NoError(t, err)
				require.Equal(t, expectedStyle(style), res.SplitStyle)
				checkImage(t, img, res)
				// The unreadable program (mode 000 in the tarball) is read from the stream.
				require.NotNil(t, img.Expect("/usr/sbin/secret"))
				require.True(t, hasSymbol(res, "/usr/sbin/secret"))

				// Everything is in one directory of TmpDir, and only the symbol files remain.
				entries, err := os.ReadDir(tmp)
				require.NoError(t, err)
				require.Len(t, entries, 1)
				var files []string
				require.NoError(t, filepath.Walk(tmp, func(p string, fi os.FileInfo, err error) error {
					if err == nil && fi.Mode().IsRegular() {
						files = append(files, p)
					}
					return err
				}))
				var symFiles []string
				for _, s := range res.Symbols {
					require.True(t, strings.HasPrefix(s.File, tmp+string(filepath.Separator)), s.File)
					symFiles = append(symFiles, s.File)
				}
				sort.Strings(files)
				sort.Strings(symFiles)
				require.Equal(t, symFiles, files)
				require.NoError(t, res.Close())
				entries, err = os.ReadDir(tmp)
				require.NoError(t, err)
				require.Empty(t, entries)
			})
		}
	}
}

func hasSymbol(res *Result, p string) bool {
	for _, s := range res.Symbols {
		if s.Path == p {
			return true
		}
	}
	return false
}
