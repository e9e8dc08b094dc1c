package symbolize

import (
	"bytes"
	"compress/zlib"
	"debug/elf"
	"encoding/binary"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Hostile inputs are derived from the x86_64 fixture by patching section
// headers (ELF64 little-endian layout) or section contents.

func x86Fixture(t *testing.T) []byte {
	t.Helper()
	b, ok := fixtureBinaries(t)["x86_64"]
	if !ok {
		t.Skip("no x86_64 fixture")
	}
	return b
}

// shdr returns the file offset of the section header of name.
func shdr(t *testing.T, data []byte, name string) (hdrOff int, sec *elf.Section) {
	t.Helper()
	ef, err := elf.NewFile(bytes.NewReader(data))
	require.NoError(t, err)
	shoff := binary.LittleEndian.Uint64(data[0x28:])
	shentsize := binary.LittleEndian.Uint16(data[0x3a:])
	for i, s := range ef.Sections {
		if s.Name == name {
			return int(shoff) + i*int(shentsize), s
		}
	}
	t.Fatalf("no section %s", name)
	return 0, nil
}

// ELF64 section header field offsets.
const (
	shFlags  = 8
	shOffset = 24
	shSize   = 32
	shEntsz  = 56
)

func patched(t *testing.T, name string, field int, value uint64) []byte {
	t.Helper()
	data := bytes.Clone(x86Fixture(t))
	off, _ := shdr(t, data, name)
	binary.LittleEndian.PutUint64(data[off+field:], value)
	return data
}

// allocatedBy returns the bytes allocated while fn runs.
func allocatedBy(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestHostileFiles(t *testing.T) {
	base := x86Fixture(t)
	compressedLine := func(declared uint64, stream []byte) []byte {
		data := bytes.Clone(base)
		off, s := shdr(t, data, ".debug_line")
		chdr := make([]byte, 24)
		binary.LittleEndian.PutUint32(chdr[0:], uint32(elf.COMPRESS_ZLIB))
		binary.LittleEndian.PutUint64(chdr[8:], declared)
		body := append(chdr, stream...)
		require.LessOrEqual(t, len(body), int(s.FileSize), "compressed body fits the old section")
		copy(data[s.Offset:], body)
		binary.LittleEndian.PutUint64(data[off+shSize:], uint64(len(body)))
		binary.LittleEndian.PutUint64(data[off+shFlags:], uint64(elf.SHF_COMPRESSED))
		return data
	}
	zbytes := func(n int) []byte {
		var b bytes.Buffer
		w := zlib.NewWriter(&b)
		_, err := w.Write(make([]byte, n))
		require.NoError(t, err)
		require.NoError(t, w.Close())
		return b.Bytes()
	}
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"debug_info size past end of file", patched(t, ".debug_info", shSize, 1<<40), "extend past end of file"},
		{"debug_info offset past end of file", patched(t, ".debug_info", shOffset, 1<<40), "extend past end of file"},
		{"symtab size past end of file", patched(t, ".symtab", shSize, 1<<50), "extend past end of file"},
		{"symtab entry size", patched(t, ".symtab", shEntsz, 7), "entry size"},
		{"compressed size over ratio", compressedLine(1<<40, zbytes(100)), "is over 64x"},
		{"compressed stream longer than declared", compressedLine(1000, zbytes(5000)), "header says"},
		{"compressed stream shorter than declared", compressedLine(500, zbytes(100)), "header says"},
		{"compressed stream garbage", compressedLine(100, []byte("not zlib at all")), "zlib"},
		{"compressed section name table", patched(t, ".shstrtab", shFlags, uint64(elf.SHF_COMPRESSED)), "compressed section name table"},
		{"section name table past end of file", patched(t, ".shstrtab", shSize, 1<<40), "extend past end of file"},
		{"truncated", base[:len(base)/2], ""},
		{"header only", base[:64], ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			n := allocatedBy(func() {
				var f *File
				f, err = NewFile(bytes.NewReader(tc.data))
				if err == nil {
					probe(t, f)
				}
			})
			if tc.want != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.want)
			}
			assert.Less(t, n, uint64(8*len(base)+4<<20), "allocated %d bytes for a %d-byte file", n, len(tc.data))
		})
	}
}

// A hand-made DWARF 5 line program header with absurd counts.
func TestHostileLineHeader(t *testing.T) {
	header := func(dirFormats []byte, dirCount []byte) []byte {
		var b bytes.Buffer
		b.Write([]byte{5, 0, 8, 0})        // version 5, address size 8, no segment selector
		b.Write([]byte{0, 0, 0, 0})        // header_length, patched below
		b.Write([]byte{1, 1, 1, 0xfb, 14}) // min_inst, max_ops, default_is_stmt, line_base, line_range
		b.WriteByte(13)                    // opcode_base
		b.Write([]byte{0, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 1})
		b.Write(dirFormats)
		b.Write(dirCount)
		b.Write([]byte{0, 0}) // no file formats, no files
		body := b.Bytes()
		binary.LittleEndian.PutUint32(body[4:], uint32(len(body)-8))
		out := binary.LittleEndian.AppendUint32(nil, uint32(len(body)))
		return append(out, body...)
	}
	uleb := func(v uint64) []byte {
		var out []byte
		for {
			c := byte(v & 0x7f)
			v >>= 7
			if v != 0 {
				out = append(out, c|0x80)
				continue
			}
			return append(out, c)
		}
	}
	env := func(line []byte) *lineEnv {
		return &lineEnv{line: line, order: binary.LittleEndian, cuAddrSize: 8}
	}
	for _, tc := range []struct {
		name    string
		formats []byte
		count   uint64
	}{
		{"2^60 directories", []byte{1, 1, 0x08}, 1 << 60},
		{"2^64-1 directories", []byte{1, 1, 0x08}, ^uint64(0)},
		{"directories without formats", []byte{0}, 5},
		{"255 formats", []byte{255}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line := header(tc.formats, uleb(tc.count))
			var err error
			n := allocatedBy(func() { _, _, err = readLineProgram(env(line), 0) })
			require.Error(t, err)
			assert.Less(t, n, uint64(1<<16))
		})
	}

	// Unit length larger than the section, header length larger than the unit.
	_, _, err := readLineProgram(env([]byte{0xff, 0xff, 0xff, 0x7f, 5, 0}), 0)
	require.ErrorContains(t, err, "exceeds section")
	_, _, err = readLineProgram(env([]byte{8, 0, 0, 0, 4, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0}), 0)
	require.ErrorContains(t, err, "exceeds unit")
}
