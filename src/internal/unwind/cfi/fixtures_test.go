package cfi

import (
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// objects are the ELF files whose tables the tests and fuzzers read: the fixture programs of
// testdata/cores and the libraries their cores used (Debian's cross libraries for ARM, this
// machine's for x86-64). Missing ones are skipped.
func objects() []string {
	var out []string
	for _, a := range []string{"x86_64", "aarch64", "armhf", "i386"} {
		out = append(out, filepath.Join("..", "..", "..", "testdata", "cores", a, "threads"))
	}
	return append(out,
		"/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		"/usr/aarch64-linux-gnu/lib/libc.so.6", "/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1",
		"/usr/arm-linux-gnueabihf/lib/libc.so.6", "/usr/arm-linux-gnueabihf/lib/ld-linux-armhf.so.3")
}

// object is the unwind sections of one ELF file.
type object struct {
	path                 string
	cfg                  Config
	ehFrame, hdr, debug  []byte
	ehAddr, hdrAddr      uint64
	exidx, extab         []byte
	exidxAddr, extabAddr uint64
}

func loadObject(t testing.TB, path string) *object {
	f, err := elf.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			t.Logf("%s: not installed, skipped", path)
			return nil
		}
		require.NoError(t, err)
	}
	defer f.Close()
	o := &object{path: path, cfg: Config{Order: f.ByteOrder, AddrSize: 8}}
	if f.Class == elf.ELFCLASS32 {
		o.cfg.AddrSize = 4
	}
	data := func(name string) ([]byte, uint64) {
		s := f.Section(name)
		if s == nil || s.Type == elf.SHT_NOBITS {
			return nil, 0
		}
		b, err := s.Data()
		require.NoError(t, err)
		return b, s.Addr
	}
	o.ehFrame, o.ehAddr = data(".eh_frame")
	o.hdr, o.hdrAddr = data(".eh_frame_hdr")
	o.debug, _ = data(".debug_frame")
	o.exidx, o.exidxAddr = data(".ARM.exidx")
	o.extab, o.extabAddr = data(".ARM.extab")
	return o
}

func (o *object) cfgAt(addr uint64) Config {
	c := o.cfg
	c.Bases.Section = addr
	return c
}

// TestRealTables parses every table of the fixture objects and runs the CFA program of every
// FDE to its first and last instruction.
func TestRealTables(t *testing.T) {
	for _, path := range objects() {
		o := loadObject(t, path)
		if o == nil {
			continue
		}
		t.Run(strings.ReplaceAll(strings.TrimLeft(path, "./"), "/", "_"), func(t *testing.T) {
			var tabs []*Table
			if o.ehFrame != nil {
				tab, err := ParseEHFrame(o.ehFrame, o.cfgAt(o.ehAddr))
				require.NoError(t, err)
				tabs = append(tabs, tab)
				if o.hdr != nil {
					h, err := ParseEHFrameHdr(o.hdr, o.cfgAt(o.hdrAddr))
					require.NoError(t, err)
					require.Equal(t, o.ehAddr, h.EHFramePtr)
					require.Equal(t, tab.Len(), h.Len(), "the header indexes every FDE")
					for i := 0; i < h.Len(); i++ {
						pc, fde := h.Entry(i)
						f, err := tab.FDEFor(pc)
						require.NoError(t, err)
						require.Equal(t, fde, o.ehAddr+f.Offset, "FDE of %#x", pc)
					}
				}
			}
			if o.debug != nil {
				tab, err := ParseDebugFrame(o.debug, o.cfg)
				require.NoError(t, err)
				tabs = append(tabs, tab)
			}
			fdes, rows := 0, 0
			for _, tab := range tabs {
				for i := 0; i < tab.Len(); i++ {
					f := tab.FDE(i)
					for _, pc := range []uint64{f.Start, (f.Start + f.End) / 2, f.End - 1} {
						row, err := f.RowAt(pc)
						require.NoError(t, err, "FDE at %#x, pc %#x", f.Offset, pc)
						require.LessOrEqual(t, row.Loc, pc)
						rows++
					}
					fdes++
				}
			}
			entries := 0
			if o.exidx != nil {
				x, err := ParseEXIDX(o.exidx, o.exidxAddr, o.extab, o.extabAddr, o.cfg.Order)
				require.NoError(t, err)
				for i := 0; i < x.Len(); i++ {
					_, err := x.decode(i)
					require.NoError(t, err, "exidx entry %d", i)
					entries++
				}
			}
			t.Logf("%d FDEs, %d rows, %d exidx entries", fdes, rows, entries)
		})
	}
}

// sectionPrefix cuts a CFI section after its first entries, at most n bytes.
func sectionPrefix(b []byte, order binary.ByteOrder, n int) []byte {
	end := 0
	for end+4 <= len(b) {
		l := int(order.Uint32(b[end:]))
		if l == 0 || l >= 0xfffffff0 || end+4+l > n || end+4+l > len(b) {
			break
		}
		end += 4 + l
	}
	return b[:end]
}
