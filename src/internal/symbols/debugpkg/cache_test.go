package debugpkg

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/testutil/yoctoimage"
)

// presentAll answers that the server has every build-id it is asked about, and counts the
// questions.
type presentAll struct{ calls int }

func (p *presentAll) ask(_ context.Context, ids []string) map[string]bool {
	p.calls++
	have := map[string]bool{}
	for _, id := range ids {
		have[id] = true
	}
	return have
}

// cacheRun runs FromYocto (dbg != "") or FromArchive with a cache directory ("" none) and a
// present check (nil none), with an eu-unstrip that logs its runs.
func cacheRun(t *testing.T, image, dbg, cacheDir string, present func(context.Context, []string) map[string]bool) (*Result, []string) {
	t.Helper()
	script, log := loggingUnstrip(t)
	tmp := t.TempDir()
	opt := Options{TmpDir: tmp, EuUnstrip: script, Concurrency: 2, Log: t.Logf, CacheDir: cacheDir, Present: present}
	var res *Result
	var err error
	if dbg != "" {
		res, err = FromYocto(context.Background(), image, dbg, opt)
	} else {
		res, err = FromArchive(context.Background(), image, opt)
	}
	require.NoError(t, err)
	t.Cleanup(func() { res.Close() })
	return res, unstripped(t, log)
}

func cacheEntries(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "image-index", "*.json"))
	require.NoError(t, err)
	sort.Strings(m)
	return m
}

// sameResult: the Result of a run from the cache is the one reading the image gives.
func sameResult(t *testing.T, want, got *Result) {
	t.Helper()
	require.Equal(t, want.ELFs, got.ELFs)
	require.Equal(t, want.Symbols, got.Symbols)
	require.Equal(t, want.Skipped, got.Skipped)
	require.Equal(t, want.SplitStyle, got.SplitStyle)
	require.Equal(t, want.DbgImageSkipped, got.DbgImageSkipped)
}

// TestCacheReRun: the second upload of the same .tar.bz2 image, everything on the server,
// hashes the rootfs tarball and reads nothing else: no byte goes through a decompressor, no
// eu-unstrip runs, the server is asked once, and the Result is the one a full read gives.
func TestCacheReRun(t *testing.T) {
	b := defaultBuild(t)
	img := b.Image(t, yoctoimage.StyleWithSrcpkg, yoctoimage.Bzip2)
	fi, err := os.Stat(img.Rootfs)
	require.NoError(t, err)
	cache := filepath.Join(t.TempDir(), "cache")

	// Without a cache: the reference.
	p0 := &presentAll{}
	want, _ := cacheRun(t, img.Rootfs, img.Dbg, "", p0.ask)
	require.True(t, want.DbgImageSkipped)
	require.False(t, want.Input.FromCache)
	require.Empty(t, want.Input.ImageSHA256)
	require.Positive(t, want.Input.Image.Decompressed)
	require.Zero(t, want.Input.Image.Hashed)

	// First run with the cache: the image is read (and hashed while it is), its index stored.
	p1 := &presentAll{}
	first, _ := cacheRun(t, img.Rootfs, img.Dbg, cache, p1.ask)
	require.Equal(t, 1, p1.calls)
	require.False(t, first.Input.FromCache)
	require.Len(t, first.Input.ImageSHA256, 64)
	require.Positive(t, first.Input.Image.Compressed)
	require.Positive(t, first.Input.Image.Decompressed)
	require.Equal(t, 2*fi.Size(), first.Input.Image.Hashed, "hashed once to look it up, once while it was read")
	sameResult(t, want, first)
	require.Len(t, cacheEntries(t, cache), 1)
	require.FileExists(t, filepath.Join(cache, "image-index", first.Input.ImageSHA256+".json"))

	// The re-run: from the cache.
	p2 := &presentAll{}
	second, runs := cacheRun(t, img.Rootfs, img.Dbg, cache, p2.ask)
	require.Equal(t, 1, p2.calls, "the server is asked once")
	require.True(t, second.Input.FromCache)
	require.Equal(t, first.Input.ImageSHA256, second.Input.ImageSHA256)
	require.Equal(t, ReadCount{Hashed: fi.Size()}, second.Input.Image, "the rootfs is hashed, not decompressed")
	require.Equal(t, ReadCount{}, second.Input.DbgImage, "the -dbg image is not decompressed")
	require.Empty(t, runs, "eu-unstrip ran")
	sameResult(t, want, second)
	// The index holds what a reader of the report needs: every ELF file, its links and facts.
	require.Len(t, second.ELFs, len(img.ELFs))
	for i, e := range img.ELFs {
		require.Equal(t, e.Path, second.ELFs[i].Path)
		require.Equal(t, e.BuildID, second.ELFs[i].BuildID, e.Path)
		require.Equal(t, e.Links, second.ELFs[i].Links, e.Path)
	}

	// Even from the cache, a -dbg image that is not there is an error.
	opt := Options{TmpDir: t.TempDir(), CacheDir: cache, Present: (&presentAll{}).ask}
	_, err = FromYocto(context.Background(), img.Rootfs, filepath.Join(t.TempDir(), "missing.tar.bz2"), opt)
	require.ErrorContains(t, err, "missing.tar.bz2")
}

// TestCacheServerLacksSome: from the cache, the server lacks a build-id of the image: the
// image is read after all (the server is not asked twice) and the missing file is made.
func TestCacheServerLacksSome(t *testing.T) {
	b := defaultBuild(t)
	img := b.Image(t, yoctoimage.StyleWithSrcpkg, yoctoimage.Zstd)
	cache := filepath.Join(t.TempDir(), "cache")
	cacheRun(t, img.Rootfs, img.Dbg, cache, (&presentAll{}).ask)
	require.Len(t, cacheEntries(t, cache), 1)

	crasher := img.Expect("/usr/bin/crasher")
	calls := 0
	res, runs := cacheRun(t, img.Rootfs, img.Dbg, cache, func(_ context.Context, ids []string) map[string]bool {
		calls++
		have := map[string]bool{}
		for _, id := range ids {
			have[id] = id != crasher.BuildID
		}
		return have
	})
	require.Equal(t, 1, calls, "the server is asked once")
	require.False(t, res.Input.FromCache)
	require.Positive(t, res.Input.Image.Decompressed)
	require.Positive(t, res.Input.DbgImage.Decompressed)
	require.False(t, res.DbgImageSkipped)
	require.Equal(t, []string{crasher.BuildID}, runs)
	sym := symbolFor(res, "/usr/bin/crasher")
	require.NotNil(t, sym)
	require.Equal(t, SourceUnstripped, sym.Source)
	checkSymbolFile(t, *sym, crasher)
}

// TestCacheKeyIsTheBytes: another tarball at the same path, with the same modification time,
// is not taken for the first: the key is the SHA-256 of the bytes. FromArchive uses the cache
// too.
func TestCacheKeyIsTheBytes(t *testing.T) {
	b := defaultBuild(t)
	img := b.Image(t, yoctoimage.StyleWithSrcpkg, yoctoimage.None)
	crasher, cxx, plain := img.Expect("/usr/bin/crasher"), img.Expect("/usr/bin/cxx"), img.Expect("/usr/bin/plain")
	cache := filepath.Join(t.TempDir(), "cache")
	archive := filepath.Join(t.TempDir(), "symbols.tar")
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	write := func(members [][2]string) {
		writeTar(t, archive, members)
		require.NoError(t, os.Chtimes(archive, mtime, mtime))
	}
	paths := func(res *Result) []string {
		var p []string
		for _, e := range res.ELFs {
			p = append(p, e.Path)
		}
		return p
	}

	write([][2]string{{"usr/bin/crasher", readFile(t, crasher.Original)}, {"usr/bin/plain", readFile(t, plain.Original)}})
	res, _ := cacheRun(t, archive, "", cache, (&presentAll{}).ask)
	require.False(t, res.Input.FromCache)
	res, _ = cacheRun(t, archive, "", cache, (&presentAll{}).ask)
	require.True(t, res.Input.FromCache)
	require.Equal(t, []string{"/usr/bin/crasher", "/usr/bin/plain"}, paths(res))
	firstSum := res.Input.ImageSHA256

	write([][2]string{{"usr/bin/crasher", readFile(t, crasher.Original)}, {"usr/bin/cxx", readFile(t, cxx.Original)}})
	res, _ = cacheRun(t, archive, "", cache, (&presentAll{}).ask)
	require.False(t, res.Input.FromCache, "other bytes, same path and time: read again")
	require.NotEqual(t, firstSum, res.Input.ImageSHA256)
	require.Equal(t, []string{"/usr/bin/crasher", "/usr/bin/cxx"}, paths(res))
	res, _ = cacheRun(t, archive, "", cache, (&presentAll{}).ask)
	require.True(t, res.Input.FromCache)
	require.Equal(t, []string{"/usr/bin/crasher", "/usr/bin/cxx"}, paths(res))
	require.Len(t, cacheEntries(t, cache), 2)
}

// TestCacheDamaged: an entry that is corrupt, cut short or made by another format is not used
// (the image is read and the entry written again); a cache that cannot be written, or no
// present check, changes nothing but the speed.
func TestCacheDamaged(t *testing.T) {
	b := defaultBuild(t)
	img := b.Image(t, yoctoimage.StyleWithSrcpkg, yoctoimage.Gzip)
	cache := filepath.Join(t.TempDir(), "cache")
	want, _ := cacheRun(t, img.Rootfs, img.Dbg, cache, (&presentAll{}).ask)
	entries := cacheEntries(t, cache)
	require.Len(t, entries, 1)
	good, err := os.ReadFile(entries[0])
	require.NoError(t, err)

	flipped := append([]byte(nil), good...)
	i := len(flipped) - 100 // inside the events: still valid JSON
	require.Greater(t, i, 0)
	for ; flipped[i] < 'a' || flipped[i] > 'e'; i++ {
	}
	flipped[i]++
	for name, damage := range map[string][]byte{
		"cut short":  good[:len(good)/2],
		"bit flip":   flipped,
		"not json":   []byte("\x00\x01garbage"),
		"empty":      {},
		"old format": []byte(`{"format":"memfault-image-index/0","events":[]}`),
	} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(entries[0], damage, 0o600))
			res, _ := cacheRun(t, img.Rootfs, img.Dbg, cache, (&presentAll{}).ask)
			require.False(t, res.Input.FromCache)
			sameResult(t, want, res)
			again, err := os.ReadFile(entries[0])
			require.NoError(t, err)
			require.Equal(t, good, again, "the entry is written again")
		})
	}

	t.Run("unwritable", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		require.NoError(t, os.WriteFile(file, nil, 0o600))
		for i := 0; i < 2; i++ {
			res, _ := cacheRun(t, img.Rootfs, img.Dbg, filepath.Join(file, "cache"), (&presentAll{}).ask)
			require.False(t, res.Input.FromCache)
			sameResult(t, want, res)
		}
	})

	t.Run("no present check", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "cache")
		res, _ := cacheRun(t, img.Rootfs, img.Dbg, other, nil)
		require.False(t, res.Input.FromCache)
		require.Len(t, cacheEntries(t, other), 1, "stored for the next run")
		res, _ = cacheRun(t, img.Rootfs, img.Dbg, other, nil)
		require.False(t, res.Input.FromCache, "without a present check everything is made: the image is needed")
	})
}

// TestCachePrune: the cache keeps the cacheKeep most recently used entries.
func TestCachePrune(t *testing.T) {
	c := newImageCache(t.TempDir(), t.Logf)
	old := time.Now().Add(-time.Hour)
	for i := 0; i < cacheKeep+3; i++ {
		sum := fmt.Sprintf("%03d", i)
		c.store(sum, int64(i), nil)
		at := old.Add(time.Duration(i) * time.Second)
		require.NoError(t, os.Chtimes(c.path(sum), at, at))
	}
	c.prune()
	m, err := filepath.Glob(filepath.Join(c.dir, "*.json"))
	require.NoError(t, err)
	require.Len(t, m, cacheKeep)
	for _, gone := range []string{"000", "001", "002"} {
		require.NoFileExists(t, c.path(gone), "an oldest entry was kept")
	}
	require.FileExists(t, c.path(fmt.Sprintf("%03d", cacheKeep+2)))
}

// TestCacheNotUTF8: an image with a name JSON cannot keep as it is is not cached: a replay
// would name the file otherwise than reading the image does.
func TestCacheNotUTF8(t *testing.T) {
	b := defaultBuild(t)
	img := b.Image(t, yoctoimage.StyleWithSrcpkg, yoctoimage.None)
	archive := filepath.Join(t.TempDir(), "symbols.tar")
	writeTar(t, archive, [][2]string{{"usr/bin/cr\xffsher", readFile(t, img.Expect("/usr/bin/crasher").Original)}})
	cache := filepath.Join(t.TempDir(), "cache")
	for i := 0; i < 2; i++ {
		res, _ := cacheRun(t, archive, "", cache, (&presentAll{}).ask)
		require.False(t, res.Input.FromCache)
		require.Len(t, res.ELFs, 1)
		require.Equal(t, "/usr/bin/cr\xffsher", res.ELFs[0].Path)
	}
	require.Empty(t, cacheEntries(t, cache))
}
