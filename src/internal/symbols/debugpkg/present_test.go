package debugpkg

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/testutil/yoctoimage"
)

// loggingUnstrip is a script that records the output file of every eu-unstrip run (its
// build-id names it) and then runs the real eu-unstrip.
func loggingUnstrip(t *testing.T) (script, log string) {
	t.Helper()
	real, err := exec.LookPath("eu-unstrip")
	require.NoError(t, err)
	dir := t.TempDir()
	log = filepath.Join(dir, "runs")
	script = filepath.Join(dir, "eu-unstrip")
	body := fmt.Sprintf("#!/bin/sh\necho \"$2\" >> '%s'\nexec '%s' \"$@\"\n", log, real)
	require.NoError(t, os.WriteFile(script, []byte(body), 0o755))
	return script, log
}

// unstripped lists the build-ids eu-unstrip was run for.
func unstripped(t *testing.T, log string) []string {
	t.Helper()
	b, err := os.ReadFile(log)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	var ids []string
	for _, l := range strings.Fields(string(b)) {
		ids = append(ids, strings.TrimSuffix(filepath.Base(l), ".debug"))
	}
	sort.Strings(ids)
	return ids
}

func regularFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	require.NoError(t, filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			files = append(files, p)
		}
		return err
	}))
	return files
}

// TestPresent: the build-ids the server has (Options.Present) are not recombined; when it has
// them all, the -dbg image is not read.
func TestPresent(t *testing.T) {
	b := defaultBuild(t)
	img := b.Image(t, yoctoimage.StyleWithSrcpkg, yoctoimage.Zstd)
	var ids []string // every ELF file's build-id, per readelf
	for _, e := range img.ELFs {
		if e.BuildID != "" {
			ids = append(ids, e.BuildID)
		}
	}
	sort.Strings(ids)
	require.NotEmpty(t, ids)

	run := func(t *testing.T, dbg string, have map[string]bool) (*Result, []string, []string, error) {
		t.Helper()
		script, log := loggingUnstrip(t)
		var asked []string
		calls := 0
		tmp := t.TempDir()
		res, err := FromYocto(context.Background(), img.Rootfs, dbg, Options{
			TmpDir: tmp, EuUnstrip: script, Concurrency: 2, Log: t.Logf,
			Present: func(_ context.Context, buildIDs []string) map[string]bool {
				calls++
				asked = append([]string(nil), buildIDs...)
				return have
			},
		})
		if err == nil {
			t.Cleanup(func() { res.Close() })
		}
		require.Equal(t, 1, calls, "Present asked once")
		require.Equal(t, ids, asked, "Present is asked about every build-id of the image, sorted")
		return res, unstripped(t, log), regularFiles(t, tmp), err
	}

	t.Run("all", func(t *testing.T) {
		have := map[string]bool{}
		for _, id := range ids {
			have[strings.ToUpper(id)] = true // any case
		}
		res, runs, files, err := run(t, img.Dbg, have)
		require.NoError(t, err)
		require.True(t, res.DbgImageSkipped)
		require.Empty(t, runs, "eu-unstrip ran for build-ids the server has")
		require.Empty(t, files, "files left for build-ids the server has")
		require.Empty(t, res.SplitStyle, "the -dbg image was not read")
		var got []string
		for _, s := range res.Symbols {
			require.Equal(t, SourceOnServer, s.Source, s.Path)
			require.Empty(t, s.File, s.Path)
			got = append(got, s.BuildID)
		}
		sort.Strings(got)
		require.Equal(t, ids, got, "one on-server symbol per build-id")
		require.Len(t, res.ELFs, len(img.ELFs))
		for _, s := range res.Skipped {
			require.Contains(t, []string{ReasonNoBuildID, ReasonNotELF}, s.Reason, s.Path)
		}
	})

	t.Run("all/dbg image missing", func(t *testing.T) {
		have := map[string]bool{}
		for _, id := range ids {
			have[id] = true
		}
		_, _, _, err := run(t, filepath.Join(t.TempDir(), "missing.tar.zst"), have)
		require.ErrorContains(t, err, "missing.tar.zst")
	})

	t.Run("some", func(t *testing.T) {
		have := map[string]bool{"0123456789abcdef": true} // not the image's: ignored
		onServer := map[string]string{}
		for _, p := range []string{"/usr/bin/crasher", "/usr/lib/libcrash.so.1.0.0", "/usr/bin/bypath"} {
			e := img.Expect(p)
			require.NotNil(t, e, p)
			have[e.BuildID] = true
			onServer[e.BuildID] = p
		}
		res, runs, _, err := run(t, img.Dbg, have)
		require.NoError(t, err)
		require.False(t, res.DbgImageSkipped)
		require.Equal(t, StyleWithSrcpkg, res.SplitStyle)
		for _, id := range runs {
			require.NotContains(t, onServer, id, "eu-unstrip ran for %s, which the server has", onServer[id])
		}
		require.NotEmpty(t, runs)
		syms := map[string]Symbol{}
		for _, s := range res.Symbols {
			syms[s.BuildID] = s
		}
		for i, info := range res.ELFs {
			e := img.ELFs[i]
			require.Equal(t, e.Path, info.Path)
			// The pairing is known: the -dbg image was read for the others.
			require.Equal(t, e.PairedBy, info.PairedBy, e.Path)
			if e.BuildID == "" || (!e.HasDebug && e.PairedBy == "") {
				continue
			}
			sym, ok := syms[e.BuildID]
			require.True(t, ok, "no symbol for %s", e.Path)
			if onServer[e.BuildID] != "" {
				require.Equal(t, SourceOnServer, sym.Source, e.Path)
				require.Empty(t, sym.File)
				continue
			}
			require.NotEqual(t, SourceOnServer, sym.Source, e.Path)
			checkSymbolFile(t, sym, &e)
		}
		for _, s := range res.Skipped {
			require.Contains(t, []string{ReasonNoBuildID, ReasonNotELF}, s.Reason, s.Path)
		}
	})

	t.Run("none", func(t *testing.T) {
		res, runs, _, err := run(t, img.Dbg, nil)
		require.NoError(t, err)
		require.False(t, res.DbgImageSkipped)
		checkImage(t, img, res)
		require.NotEmpty(t, runs)
	})
}
