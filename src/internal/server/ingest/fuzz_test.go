package ingest

import (
	"archive/zip"
	"bytes"
	"io"
	"log/slog"
	"testing"
)

// FuzzReadMAR feeds arbitrary bytes to the MAR validation of the commit path: it must reject
// or accept, never panic, and never read a member beyond the limits.
func FuzzReadMAR(f *testing.F) {
	f.Add(makeZip(&testing.T{}, append(entry(uuid1), entry(uuid2)...)...))
	f.Add(makeZip(&testing.T{}, member{name: "../x", body: []byte("x")}))
	f.Add([]byte("PK\x05\x06" + string(make([]byte, 18))))
	s := New(Config{MaxEntry: 1 << 16, MaxEntries: 64}, nil, Hooks{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	f.Fuzz(func(t *testing.T, b []byte) {
		zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		entries, err := s.readMAR(zr)
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.core != nil {
				if _, err := readBounded(e.core, s.cfg.MaxEntry); err != nil {
					continue
				}
			}
		}
	})
}
