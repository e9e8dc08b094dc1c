package debugpkg

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"meta-memfault-go/internal/testutil/yoctoimage"
)

// FuzzFacts feeds hostile bytes to the ELF reader: errors, never panics; what it finds stays
// within bounds. The seeds are whole ELF files (tens of KiB): minimizing one takes the whole
// -fuzzminimizetime, so run with a count, e.g. -fuzztime 60s -fuzzminimizetime 20x.
func FuzzFacts(f *testing.F) {
	yoctoimage.Need(f)
	b := yoctoimage.Compile(f, yoctoimage.Spec{Programs: yoctoimage.Default().Programs[:5]})
	img := b.Image(f, StyleDebug, yoctoimage.None)
	for _, e := range img.ELFs {
		for _, p := range []string{e.Original, e.Stripped, filepath.Join(img.DbgDir, e.DebugFile)} {
			if data, err := os.ReadFile(p); err == nil {
				f.Add(data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fs, err := inspectReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		if len(fs.buildID) > 2*maxBuildID || len(fs.debugLink) > maxDebugLink {
			t.Fatalf("out of bounds: build-id %d chars, debuglink %d", len(fs.buildID), len(fs.debugLink))
		}
	})
}
