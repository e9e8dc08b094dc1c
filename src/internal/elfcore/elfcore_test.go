package elfcore

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDecodeFixtures checks the note decoders against facts about each real crash: eight
// threads, SIGSEGV at address 16, and the crashing thread's program counter inside
// crash_segv of the unstripped binary (which checks the per-arch register layout).
func TestDecodeFixtures(t *testing.T) {
	for arch, b := range fixtureCores(t) {
		t.Run(arch, func(t *testing.T) {
			c, err := ReadCore(bytes.NewReader(b), DefaultLimits)
			require.NoError(t, err)
			notes, err := ParseNotes(c.Notes, c.Header.ByteOrder())
			require.NoError(t, err)
			p, err := DecodeProcess(&c.Header, notes)
			require.NoError(t, err)
			require.NotNil(t, p.Arch)
			require.Len(t, p.Threads, 8)
			require.NotNil(t, p.Siginfo)
			require.EqualValues(t, 11, p.Siginfo.Signo)
			require.EqualValues(t, 16, p.Siginfo.Addr)
			require.Equal(t, "threads", p.Fname)
			require.Contains(t, p.Args, "threads segv")
			require.EqualValues(t, 11, p.Threads[0].Signal)
			require.Equal(t, p.PID, p.Threads[0].TID, "the crashing thread comes first")

			exe, err := elf.Open(filepath.Join("..", "..", "testdata", "cores", arch, "threads"))
			require.NoError(t, err)
			defer exe.Close()
			syms, err := exe.Symbols()
			require.NoError(t, err)
			var fn elf.Symbol
			for _, s := range syms {
				if s.Name == "crash_segv" {
					fn = s
				}
			}
			require.NotZero(t, fn.Value)
			// Load bias of a PIE: where NT_FILE maps the file's offset 0.
			var bias uint64
			if exe.Type == elf.ET_DYN {
				for _, f := range p.Files {
					if strings.HasSuffix(f.Path, "/threads") && f.Offset == 0 {
						bias = f.Start
						break
					}
				}
				require.NotZero(t, bias)
			}
			pc := p.Threads[0].PC(p.Arch)
			if c.Header.Machine == elf.EM_ARM {
				pc &^= 1 // Thumb bit
			}
			require.GreaterOrEqual(t, pc, bias+fn.Value)
			require.Less(t, pc, bias+fn.Value+fn.Size)
			sp := p.Threads[0].SP(p.Arch)
			found := false
			for _, l := range c.Loads() {
				if sp >= l.Vaddr && sp < l.End() {
					found = true
				}
			}
			require.True(t, found, "stack pointer %#x is in a mapping", sp)
		})
	}
}

// zeroMemory reads as zeros everywhere.
type zeroMemory struct{}

func (zeroMemory) ReadMemory(p []byte, addr uint64) (int, error) { clear(p); return len(p), nil }

// TestExtendedNumbering writes a core with more than 65535 segments (PN_XNUM) and reads it
// back forward-only; eu-readelf is the oracle for the file's validity when installed.
func TestExtendedNumbering(t *testing.T) {
	for _, class := range []elf.Class{elf.ELFCLASS64, elf.ELFCLASS32} {
		t.Run(class.String(), func(t *testing.T) {
			l := &Layout{Header: Header{Class: class, Data: elf.ELFDATA2LSB, Machine: elf.EM_X86_64}}
			if class == elf.ELFCLASS32 {
				l.Header.Machine = elf.EM_ARM
			}
			l.AddNote("CORE", NT_PRPSINFO, make([]byte, 124))
			const n = 70000
			for i := 0; i < n; i++ {
				l.Segments = append(l.Segments, Segment{Vaddr: uint64(i) * 0x2000, Filesz: 1, Memsz: 0x1000, Flags: elf.PF_R})
			}
			var buf bytes.Buffer
			st, err := l.Write(&buf, zeroMemory{})
			require.NoError(t, err)
			require.Equal(t, l.Size(), st.Bytes)
			require.EqualValues(t, buf.Len(), st.Bytes)

			c, err := ReadCore(bytes.NewReader(buf.Bytes()), DefaultLimits)
			require.NoError(t, err)
			require.Equal(t, n+1, c.Header.PhNum)
			require.Len(t, c.Loads(), n)
			require.Equal(t, uint64(69999*0x2000), c.Loads()[n-1].Vaddr)

			if _, err := exec.LookPath("eu-readelf"); err == nil {
				p := filepath.Join(t.TempDir(), "core")
				require.NoError(t, os.WriteFile(p, buf.Bytes(), 0o600))
				out, err := exec.Command("eu-readelf", "-h", p).CombinedOutput()
				require.NoError(t, err, string(out))
				require.Contains(t, string(out), "70001", string(out))
			}
		})
	}
}

func TestReadCoreLimits(t *testing.T) {
	b := fixtureCores(t)["x86_64"]
	_, err := ReadCore(bytes.NewReader(b), Limits{MaxProgs: 10, MaxNoteBytes: 1 << 20, MaxSkip: 1 << 20})
	require.ErrorContains(t, err, "program headers (limit 10)")
	_, err = ReadCore(bytes.NewReader(b), Limits{MaxProgs: 1 << 10, MaxNoteBytes: 100, MaxSkip: 1 << 20})
	require.ErrorContains(t, err, "exceeds the limit")
}

func TestParseNotes(t *testing.T) {
	bo := binary.LittleEndian
	good := AppendNote(nil, bo, "CORE", NT_PRPSINFO, []byte{1, 2, 3, 4, 5})
	good = AppendNote(good, bo, "Memfault", 0x4154454d, []byte{0xa0})
	notes, err := ParseNotes(append(good, 0, 0, 0, 0), bo)
	require.NoError(t, err)
	require.Len(t, notes, 2)
	require.Equal(t, "Memfault", notes[1].Name)
	require.Equal(t, []byte{0xa0}, notes[1].Desc)

	bad := append([]byte(nil), good...)
	bo.PutUint32(bad[4:], 1<<30) // descsz of the first note
	_, err = ParseNotes(bad, bo)
	require.ErrorContains(t, err, "overrun")

	_, err = ParseNotes(good[:7], bo)
	require.ErrorContains(t, err, "header needs 12")
}

// TestFileBuildID checks the build-id reader against eu-readelf on every fixture binary.
func TestFileBuildID(t *testing.T) {
	if _, err := exec.LookPath("eu-readelf"); err != nil {
		t.Skip("eu-readelf not installed")
	}
	bins, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "cores", "*", "threads"))
	require.NotEmpty(t, bins)
	for _, p := range bins {
		f, err := os.Open(p)
		require.NoError(t, err)
		st, _ := f.Stat()
		id, err := FileBuildID(f, st.Size())
		f.Close()
		require.NoError(t, err)
		out, err := exec.Command("eu-readelf", "-n", p).CombinedOutput()
		require.NoError(t, err)
		require.Contains(t, string(out), "Build ID: "+id, p)
	}
	_, err := FileBuildID(strings.NewReader("not elf"), 7)
	require.Error(t, err)
}
