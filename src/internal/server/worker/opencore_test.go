package worker

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/server/store"
)

// openCore gives the same bytes whether a core is kept in memory or read from a file, and
// refuses a core over the limit either way.
func TestOpenCore(t *testing.T) {
	st, err := store.Open(t.TempDir())
	require.NoError(t, err)
	defer st.Close()
	core := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	var gz, zs bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write(core)
	gw.Close()
	zw, err := zstd.NewWriter(&zs)
	require.NoError(t, err)
	zw.Write(core)
	zw.Close()
	stored := map[string][]byte{"none": core, "gzip": gz.Bytes(), "zstd": zs.Bytes()}

	defer func(v, w int64) { inMemoryCore, inMemoryFileCore = v, w }(inMemoryCore, inMemoryFileCore)
	for _, tc := range []struct {
		name     string
		inMemory int64
		max      int64
		file     bool // read from a file, not memory
		tooLarge bool
		fileCore int64 // inMemoryFileCore (default 1 MiB)
	}{
		{name: "memory", inMemory: 1 << 20, max: 1 << 20},
		{name: "memory, exactly the limit", inMemory: 1 << 20, max: int64(len(core))},
		{name: "file", inMemory: 1 << 10, max: 1 << 20, file: true},
		{name: "over the limit, memory", inMemory: 1 << 20, max: int64(len(core)) - 1, tooLarge: true},
		{name: "over the limit, file", inMemory: 1 << 10, max: int64(len(core)) - 1, tooLarge: true},
		// Stored uncompressed and over inMemoryFileCore: its file; a compressed one in memory.
		{name: "uncompressed over the file limit", inMemory: 1 << 20, max: 1 << 20, fileCore: 1 << 10},
	} {
		for comp, b := range stored {
			t.Run(tc.name+"/"+comp, func(t *testing.T) {
				inMemoryCore, inMemoryFileCore = tc.inMemory, tc.fileCore
				if tc.fileCore == 0 {
					inMemoryFileCore = 1 << 20
				}
				wantFile := tc.file || (tc.fileCore != 0 && comp == "none")
				hash, _, err := st.PutBlob(bytes.NewReader(b), int64(len(b)))
				require.NoError(t, err)
				r, size, cleanup, err := openCore(st, &store.Core{Blob: hash, Compression: comp}, tc.max)
				if tc.tooLarge {
					require.Error(t, err)
					require.Regexp(t, `over the limit|more than|exceeds configured limit`, err.Error())
					return
				}
				require.NoError(t, err)
				defer cleanup()
				_, isFile := r.(*os.File)
				require.Equal(t, wantFile, isFile)
				require.EqualValues(t, len(core), size)
				got, err := io.ReadAll(io.NewSectionReader(r, 0, size))
				require.NoError(t, err)
				require.Equal(t, core, got)
			})
		}
	}
}
