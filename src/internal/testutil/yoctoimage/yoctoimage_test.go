package yoctoimage

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// sections lists a file's section names and types with readelf.
func sections(t *testing.T, file string) map[string]string {
	t.Helper()
	out, err := exec.Command("readelf", "-W", "-S", file).Output()
	require.NoError(t, err, file)
	m := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		i := strings.Index(line, "]")
		if i < 0 {
			continue
		}
		f := strings.Fields(line[i+1:])
		if len(f) >= 2 {
			m[f[0]] = f[1]
		}
	}
	return m
}

func TestImageLayout(t *testing.T) {
	b := Compile(t, Default())
	for _, style := range Styles {
		t.Run(style, func(t *testing.T) {
			img := b.Image(t, style, None)
			// The rootfs tarball: names as Yocto's tar writes them, the unreadable program with
			// mode 000 and its bytes, hard links as links.
			f, err := os.Open(img.Rootfs)
			require.NoError(t, err)
			defer f.Close()
			tr := tar.NewReader(f)
			members := map[string]*tar.Header{}
			for {
				h, err := tr.Next()
				if err == io.EOF {
					break
				}
				require.NoError(t, err)
				require.True(t, h.Name == "./" || strings.HasPrefix(h.Name, "./"), h.Name)
				members[strings.TrimPrefix(h.Name, ".")] = h
			}
			secret := members["/usr/sbin/secret"]
			require.NotNil(t, secret)
			require.Equal(t, int64(0), secret.Mode&0o777)
			require.Positive(t, secret.Size)
			require.Equal(t, byte(tar.TypeLink), members["/usr/bin/plain"].Typeflag)
			require.Equal(t, "./bin/plain", members["/usr/bin/plain"].Linkname)
			require.Equal(t, byte(tar.TypeSymlink), members["/usr/lib/libcrash.so.1"].Typeflag)

			require.Len(t, img.ELFs, len(Default().Programs))
			for _, e := range img.ELFs {
				if e.Path == "/usr/bin/nobuildid" {
					require.Empty(t, e.BuildID)
				} else {
					require.Len(t, e.BuildID, 40, e.Path)
				}
				secs := sections(t, e.Stripped)
				if e.HasDebug {
					require.Equal(t, "PROGBITS", secs[".debug_info"], e.Path)
					continue
				}
				require.NotContains(t, secs, ".debug_info", e.Path)
				require.Contains(t, secs, ".gnu_debuglink", e.Path)
				_, hasID := secs[".note.gnu.build-id"]
				require.Equal(t, e.BuildID != "", hasID, e.Path)
				if e.Kind == Module {
					require.Contains(t, secs, ".symtab", "strip --strip-debug keeps a module's symtab")
				} else {
					require.NotContains(t, secs, ".symtab", e.Path)
				}
				dsecs := sections(t, img.DbgDir+e.DebugFile)
				require.Equal(t, "PROGBITS", dsecs[".debug_info"], e.DebugFile)
				require.Equal(t, "NOBITS", dsecs[".text"], e.DebugFile)
			}
			want := "/usr/bin/.debug/crasher"
			if style == StyleFileDirName {
				want = "/usr/lib/debug/usr/bin/crasher.debug"
			}
			require.Equal(t, want, img.Expect("/bin/crasher").DebugFile)
			require.Equal(t, []string{"/usr/bin/plain", "/usr/bin/plain-again"}, img.Expect("/bin/plain").Links)
			require.Equal(t, "path", img.Expect("/usr/bin/bypath").PairedBy)
			require.Equal(t, "debuglink", img.Expect("/usr/bin/bylink").PairedBy)
			require.Equal(t, style == StyleWithoutSrc, len(img.SourceFilesInDbg) == 0)
			require.Equal(t, []string{"/usr/bin/dangling"}, img.DanglingSymlinks)
		})
	}
}

func TestCompressions(t *testing.T) {
	b := Compile(t, Spec{Programs: Default().Programs[:2]})
	for _, c := range Compressions {
		img := b.Image(t, StyleDebug, c)
		var cmd *exec.Cmd
		switch c {
		case None:
			cmd = exec.Command("tar", "-tf", img.Dbg)
		default:
			cmd = exec.Command("tar", "-taf", img.Dbg)
		}
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s: %s", c, out)
		require.Contains(t, string(out), "./usr/bin/.debug/crasher", c)
	}
}

// Copies get build-ids of their own, in the binary and the debug file alike, and a debuglink
// CRC that matches their debug file.
func TestCopies(t *testing.T) {
	spec := Spec{Programs: []Program{
		{Path: "/usr/lib/libcrash.so.1.0.0", Kind: Shared, Sources: []string{"libcrash.c"}, Copies: 2},
		{Path: "/usr/bin/plain", Kind: Exec, Sources: []string{"plain.c"}, Copies: 2},
	}}
	img := Compile(t, spec).Image(t, StyleFileDirName, Gzip)
	require.Len(t, img.ELFs, 6)
	require.Equal(t, 6, img.ProgramsWithDebug)
	ids := map[string]bool{}
	for _, e := range img.ELFs {
		require.False(t, ids[e.BuildID], "build-id %s twice", e.BuildID)
		ids[e.BuildID] = true
		id, err := readelfBuildID(img.DbgDir + e.DebugFile)
		require.NoError(t, err)
		require.Equal(t, e.BuildID, id, e.DebugFile)
		f, err := elf.Open(e.Stripped)
		require.NoError(t, err)
		link, err := f.Section(".gnu_debuglink").Data()
		f.Close()
		require.NoError(t, err)
		n := bytes.IndexByte(link, 0)
		require.Equal(t, path.Base(e.DebugFile), string(link[:n]))
		dbg, err := os.ReadFile(img.DbgDir + e.DebugFile)
		require.NoError(t, err)
		require.Equal(t, crc32.ChecksumIEEE(dbg), binary.LittleEndian.Uint32(link[(n+4)&^3:]), e.Path)
	}
	require.NotNil(t, img.Expect("/usr/lib/c0002/libcrash.so.1.0.0"))
	require.NotNil(t, img.Expect("/usr/bin/c0001/plain"))
}
