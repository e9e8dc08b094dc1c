package staging

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/protocol"
)

// zipStage commits an entry holding one attachment of size bytes and returns its Info.
func zipStage(t *testing.T, d Dir, size int, mtime time.Time) Info {
	t.Helper()
	e, err := d.NewEntry()
	require.NoError(t, err)
	name := "core-" + e.UUID + ".elf.gz"
	f, err := e.Create(name)
	require.NoError(t, err)
	data := bytes.Repeat([]byte{byte(size), 0x5a, 0x00, 0xff}, size/4+1)[:size]
	_, err = f.Write(data)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.NoError(t, e.Commit(&protocol.Manifest{
		SchemaVersion: 1,
		Type:          protocol.ManifestTypeCoredump,
		Metadata:      protocol.CoredumpPayload{CoredumpFileName: name, Compression: "gzip"},
	}))
	require.NoError(t, os.Chtimes(filepath.Join(e.Path, ManifestName), mtime, mtime))
	return zipInfo(t, d, e.UUID)
}

func zipInfo(t *testing.T, d Dir, uuid string) Info {
	t.Helper()
	list, err := d.List()
	require.NoError(t, err)
	for _, i := range list {
		if i.UUID == uuid {
			return i
		}
	}
	t.Fatalf("entry %s not listed", uuid)
	return Info{}
}

func TestWriteZipRoundTrip(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	base := time.Date(2024, 5, 6, 7, 8, 10, 0, time.UTC)
	entries := []Info{zipStage(t, d, 0, base), zipStage(t, d, 1, base.Add(time.Second)), zipStage(t, d, 70_000, base.Add(2*time.Second))}

	want, err := ZipSize(entries)
	require.NoError(t, err)
	var buf bytes.Buffer
	n, err := WriteZip(&buf, entries)
	require.NoError(t, err)
	assert.Equal(t, want, n)
	assert.Equal(t, want, int64(buf.Len()))

	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		for _, f := range e.Files {
			names = append(names, e.UUID+"/"+f)
		}
	}
	require.Len(t, zr.File, len(names))
	for i, f := range zr.File {
		assert.Equal(t, names[i], f.Name)
		assert.Equal(t, zip.Store, f.Method)
		assert.Equal(t, f.CompressedSize64, f.UncompressedSize64)
		rc, err := f.Open()
		require.NoError(t, err)
		got, err := io.ReadAll(rc) // archive/zip checks the CRC at EOF
		require.NoError(t, err, f.Name)
		require.NoError(t, rc.Close())
		onDisk, err := os.ReadFile(filepath.Join(d.Path, f.Name))
		require.NoError(t, err)
		assert.Equal(t, onDisk, got, f.Name)
	}
	manifest := zr.File[len(zr.File)-1]
	assert.Equal(t, entries[2].UUID+"/"+ManifestName, manifest.Name)
	assert.Equal(t, base.Add(2*time.Second), manifest.Modified.UTC().Truncate(2*time.Second))
	rc, err := manifest.Open()
	require.NoError(t, err)
	var m protocol.Manifest
	require.NoError(t, json.NewDecoder(rc).Decode(&m))
	assert.Equal(t, protocol.ManifestTypeCoredump, m.Type)
}

func TestWriteZipEmpty(t *testing.T) {
	var buf bytes.Buffer
	n, err := WriteZip(&buf, nil)
	require.NoError(t, err)
	assert.EqualValues(t, endRecordLen, n)
	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), n)
	require.NoError(t, err)
	assert.Empty(t, zr.File)
}

func TestWriteZipRefuses(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	e, err := d.NewEntry()
	require.NoError(t, err)
	incomplete := zipInfo(t, d, e.UUID)

	gone := zipStage(t, d, 10, time.Now())
	require.NoError(t, os.Remove(filepath.Join(gone.Path, gone.Files[0])))

	for name, entries := range map[string][]Info{"incomplete": {incomplete}, "missing file": {gone}} {
		t.Run(name, func(t *testing.T) {
			_, err := ZipSize(entries)
			assert.Error(t, err)
			var buf bytes.Buffer
			_, err = WriteZip(&buf, entries)
			assert.Error(t, err)
			assert.Zero(t, buf.Len(), "nothing is written before the plan succeeds")
		})
	}
}

// A 64 MiB attachment streams through a small buffer.
func TestWriteZipStreams(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	e := zipStage(t, d, 0, time.Now())
	const big = 64 << 20
	require.NoError(t, os.Truncate(filepath.Join(e.Path, e.Files[0]), big)) // sparse: cheap to make
	e = zipInfo(t, d, e.UUID)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	n, err := WriteZip(io.Discard, []Info{e})
	runtime.ReadMemStats(&after)
	require.NoError(t, err)
	size, err := ZipSize([]Info{e})
	require.NoError(t, err)
	assert.Equal(t, size, n)
	assert.Greater(t, n, int64(big))
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20), "allocated while zipping")
}

func TestBatches(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	// Staged out of age order on purpose: Batches sorts oldest first.
	e3 := zipStage(t, d, 3000, base.Add(3*time.Second))
	e1 := zipStage(t, d, 1000, base.Add(1*time.Second))
	big := zipStage(t, d, 50_000, base.Add(2*time.Second))
	e4 := zipStage(t, d, 1000, base.Add(4*time.Second))
	unfinished, err := d.NewEntry()
	require.NoError(t, err)
	all := []Info{e3, e1, big, e4, zipInfo(t, d, unfinished.UUID)}

	one := func(e Info) int64 {
		n, err := ZipSize([]Info{e})
		require.NoError(t, err)
		return n
	}
	pair, err := ZipSize([]Info{e3, e4})
	require.NoError(t, err)

	ids := func(bs [][]Info) [][]string {
		var out [][]string
		for _, b := range bs {
			var ids []string
			for _, e := range b {
				ids = append(ids, e.UUID)
			}
			out = append(out, ids)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		max  int64
		want [][]string
	}{
		{"no cap", 0, [][]string{{e1.UUID, big.UUID, e3.UUID, e4.UUID}}},
		{"huge cap", 1 << 30, [][]string{{e1.UUID, big.UUID, e3.UUID, e4.UUID}}},
		{"oversized entry alone", one(e3) + one(e4), [][]string{{e1.UUID}, {big.UUID}, {e3.UUID, e4.UUID}}},
		{"exact fit", pair, [][]string{{e1.UUID}, {big.UUID}, {e3.UUID, e4.UUID}}},
		{"one byte short", pair - 1, [][]string{{e1.UUID}, {big.UUID}, {e3.UUID}, {e4.UUID}}},
		{"tiny cap", 1, [][]string{{e1.UUID}, {big.UUID}, {e3.UUID}, {e4.UUID}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Batches(all, tc.max)
			assert.Equal(t, tc.want, ids(got))
			for _, b := range got {
				size, err := ZipSize(b)
				require.NoError(t, err)
				var sum int64 = endRecordLen
				for i := range b {
					sum += entryZipBytes(&b[i])
				}
				assert.Equal(t, size, sum, "Batches arithmetic is exact")
				if tc.max > 0 && len(b) > 1 {
					assert.LessOrEqual(t, size, tc.max)
				}
			}
		})
	}
	assert.Empty(t, Batches(nil, 100))
}
