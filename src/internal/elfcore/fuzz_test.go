package elfcore

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// fixtureCores returns the real kernel cores of testdata/cores, decompressed.
func fixtureCores(t testing.TB) map[string][]byte {
	out := map[string][]byte{}
	dirs, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "cores", "*", "core.gz"))
	for _, p := range dirs {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(zr)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(filepath.Dir(p))] = b
	}
	if len(out) == 0 {
		t.Fatal("no fixture cores found")
	}
	return out
}

// headOf returns the part of a core that ReadCore consumes: headers and notes.
func headOf(t testing.TB, b []byte) []byte {
	c, err := ReadCore(bytes.NewReader(b), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	return b[:c.Consumed]
}

// FuzzReadCore feeds arbitrary streams to the forward-only reader and decodes whatever it
// accepts; nothing may panic or allocate without bound.
func FuzzReadCore(f *testing.F) {
	for _, b := range fixtureCores(f) {
		f.Add(headOf(f, b))
	}
	f.Add([]byte("\x7fELF"))
	f.Fuzz(func(t *testing.T, data []byte) {
		lim := Limits{MaxProgs: 1 << 12, MaxNoteBytes: 1 << 20, MaxSkip: 1 << 16}
		c, err := ReadCore(bytes.NewReader(data), lim)
		if err != nil {
			return
		}
		if c.Consumed > uint64(len(data)) {
			t.Fatalf("consumed %d of %d bytes", c.Consumed, len(data))
		}
		notes, err := ParseNotes(c.Notes, c.Header.ByteOrder())
		if err != nil {
			return
		}
		DecodeProcess(&c.Header, notes)
	})
}

// FuzzNotes decodes arbitrary note data as each supported machine would.
func FuzzNotes(f *testing.F) {
	for _, b := range fixtureCores(f) {
		c, err := ReadCore(bytes.NewReader(b), DefaultLimits)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(c.Notes, uint8(c.Header.Machine), c.Header.Class == 2)
	}
	f.Fuzz(func(t *testing.T, data []byte, machine uint8, is64 bool) {
		h := Header{Class: 1, Data: 1, Machine: 0}
		if is64 {
			h.Class = 2
		}
		for _, a := range arches {
			if uint8(a.Machine) == machine {
				h.Machine = a.Machine
			}
		}
		notes, err := ParseNotes(data, h.ByteOrder())
		if err != nil {
			return
		}
		p, err := DecodeProcess(&h, notes)
		if err != nil {
			return
		}
		for _, th := range p.Threads {
			if p.Arch != nil && len(th.Regs) != len(p.Arch.Regs) {
				t.Fatalf("thread %d has %d registers", th.TID, len(th.Regs))
			}
		}
	})
}
