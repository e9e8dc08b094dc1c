package upload

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/device/config"
	"meta-memfault-go/internal/device/staging"
	"meta-memfault-go/internal/protocol"
	"meta-memfault-go/internal/testutil/deviceapi"
)

const projectKey = "test-project-key"

var device = config.DeviceInfo{DeviceID: "dev-1", HardwareVersion: "evt", SoftwareVersion: "1.2.3", SoftwareType: "main"}

func newServer(t *testing.T) *deviceapi.Server {
	s := deviceapi.New(t, projectKey)
	s.ExpectDevice(deviceapi.Device{
		DeviceSerial: device.DeviceID, HardwareVersion: device.HardwareVersion,
		SoftwareType: device.SoftwareType, SoftwareVersion: device.SoftwareVersion,
	})
	return s
}

func newClient(s *deviceapi.Server, retryMax int) *Client {
	return New(Options{BaseURL: s.URL + "/", ProjectKey: projectKey, Device: device, RetryMax: retryMax, RetryWait: 5 * time.Millisecond})
}

// stage commits an entry with a core of size bytes; mark goes to the manifest's boot_count.
func stage(t *testing.T, d staging.Dir, size int, mark uint64) string {
	t.Helper()
	e, err := d.NewEntry()
	require.NoError(t, err)
	name := "core-" + e.UUID + ".elf.gz"
	f, err := e.Create(name)
	require.NoError(t, err)
	_, err = f.Write([]byte(strings.Repeat("c", size)))
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.NoError(t, e.Commit(&protocol.Manifest{
		SchemaVersion:  1,
		CollectionTime: protocol.CollectionTime{Timestamp: "2024-01-01T00:00:00Z", BootCount: mark},
		Device: protocol.ManifestDevice{ProjectKey: projectKey, DeviceSerial: device.DeviceID,
			HardwareVersion: device.HardwareVersion, SoftwareVersion: device.SoftwareVersion, SoftwareType: device.SoftwareType},
		Producer: protocol.Producer{ID: "memfaultd", Version: "test"},
		Type:     protocol.ManifestTypeCoredump,
		Metadata: protocol.CoredumpPayload{CoredumpFileName: name, Compression: "gzip"},
	}))
	return e.UUID
}

func listed(t *testing.T, d staging.Dir) []string {
	t.Helper()
	list, err := d.List()
	require.NoError(t, err)
	var ids []string
	for _, e := range list {
		ids = append(ids, e.UUID)
	}
	return ids
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// assertDelivered checks the server got exactly ids, each once, with their files.
func assertDelivered(t *testing.T, s *deviceapi.Server, ids []string, coreSize int64) {
	t.Helper()
	got := s.Entries()
	assert.Len(t, got, len(ids))
	for _, id := range ids {
		e, ok := got[id]
		if !assert.True(t, ok, "entry %s not delivered", id) {
			continue
		}
		assert.Equal(t, 1, e.Arrivals, id)
		assert.Equal(t, coreSize, e.Files["core-"+id+".elf.gz"], id)
		assert.Contains(t, e.Files, staging.ManifestName)
	}
	assert.Empty(t, s.Violations())
}

func TestUploadHappyPathSplitsIntoZips(t *testing.T) {
	s := newServer(t)
	d := staging.Dir{Path: filepath.Join(t.TempDir(), "mar")}
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, stage(t, d, 4000, 0))
	}
	list, err := d.List()
	require.NoError(t, err)
	two, err := staging.ZipSize(list[:2]) // every entry has the same size: two per zip
	require.NoError(t, err)
	var total int64
	for _, b := range [][]staging.Info{list[:2], list[2:4], list[4:]} {
		n, err := staging.ZipSize(b)
		require.NoError(t, err)
		total += n
	}

	rep, err := newClient(s, 0).UploadStaged(ctxTimeout(t, 10*time.Second), d, two, nil)
	require.NoError(t, err)
	assert.Equal(t, Report{Uploaded: 5, Zips: 3, Bytes: total}, rep)
	assertDelivered(t, s, ids, 4000)
	assert.Equal(t, 3, s.Commits())
	for _, k := range []deviceapi.Kind{deviceapi.Prepare, deviceapi.Put, deviceapi.Commit} {
		assert.Equal(t, 3, s.Requests(k), k.String())
	}
	assert.Empty(t, listed(t, d), "staging is empty after upload")

	rep, err = newClient(s, 0).UploadStaged(ctxTimeout(t, 10*time.Second), d, two, nil)
	require.NoError(t, err)
	assert.Equal(t, Report{}, rep, "nothing left to send")
	assert.Equal(t, 3, s.Requests(deviceapi.Prepare))
}

func TestUploadOversizedEntryGoesAlone(t *testing.T) {
	s := newServer(t)
	d := staging.Dir{Path: t.TempDir()}
	ids := []string{stage(t, d, 5000, 0), stage(t, d, 5000, 0)}
	rep, err := newClient(s, 0).UploadStaged(ctxTimeout(t, 10*time.Second), d, 1024, nil)
	require.NoError(t, err)
	assert.Equal(t, 2, rep.Zips)
	assertDelivered(t, s, ids, 5000)
}

func TestUploadFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inject func(s *deviceapi.Server)
		kind   deviceapi.Kind
		status int
	}{
		{"500 on prepare", func(s *deviceapi.Server) { s.Fail(deviceapi.Prepare, 3, 500) }, deviceapi.Prepare, 500},
		{"500 on put", func(s *deviceapi.Server) { s.Fail(deviceapi.Put, 3, 500) }, deviceapi.Put, 500},
		{"500 on commit", func(s *deviceapi.Server) { s.Fail(deviceapi.Commit, 3, 500) }, deviceapi.Commit, 500},
		{"403 on put is not retried", func(s *deviceapi.Server) { s.Fail(deviceapi.Put, 1, 403) }, deviceapi.Put, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t)
			d := staging.Dir{Path: t.TempDir()}
			ids := []string{stage(t, d, 100, 0), stage(t, d, 200, 0)}
			tc.inject(s)

			rep, err := newClient(s, 2).UploadStaged(ctxTimeout(t, 10*time.Second), d, 10<<20, nil)
			var he *HTTPError
			require.ErrorAs(t, err, &he)
			assert.Equal(t, tc.status, he.StatusCode)
			assert.Contains(t, err.Error(), "injected")
			assert.Equal(t, Report{}, rep)
			want := 3
			if tc.status < 500 {
				want = 1
			}
			assert.Equal(t, want, s.Requests(tc.kind), "attempts")
			assert.ElementsMatch(t, ids, listed(t, d), "entries stay")
			assert.Empty(t, s.Entries())

			rep, err = newClient(s, 2).UploadStaged(ctxTimeout(t, 10*time.Second), d, 10<<20, nil)
			require.NoError(t, err)
			assert.Equal(t, 2, rep.Uploaded)
			assert.Empty(t, listed(t, d))
			s2 := s.Entries()
			assert.Len(t, s2, 2)
			for _, id := range ids {
				assert.Equal(t, 1, s2[id].Arrivals)
			}
			assert.Empty(t, s.Violations())
		})
	}
}

// One failed PUT is retried inside the call, with the zip re-read from disk.
func TestUploadRetriesInsideCall(t *testing.T) {
	s := newServer(t)
	d := staging.Dir{Path: t.TempDir()}
	ids := []string{stage(t, d, 70_000, 0)}
	s.Fail(deviceapi.Put, 1, 503)
	s.Fail(deviceapi.Commit, 1, 502)
	s.Delay(deviceapi.Prepare, 1, 50*time.Millisecond)

	rep, err := newClient(s, 0).UploadStaged(ctxTimeout(t, 10*time.Second), d, 10<<20, nil)
	require.NoError(t, err)
	assert.Equal(t, 1, rep.Uploaded)
	assert.Equal(t, 2, s.Requests(deviceapi.Put))
	assert.Equal(t, 2, s.Requests(deviceapi.Commit))
	assertDelivered(t, s, ids, 70_000)
}

func TestUploadServerNeverAnswers(t *testing.T) {
	for _, k := range []deviceapi.Kind{deviceapi.Prepare, deviceapi.Put, deviceapi.Commit} {
		t.Run(k.String(), func(t *testing.T) {
			s := newServer(t)
			d := staging.Dir{Path: t.TempDir()}
			ids := []string{stage(t, d, 1000, 0)}
			s.Hang(k, 1)

			start := time.Now()
			_, err := newClient(s, 2).UploadStaged(ctxTimeout(t, 300*time.Millisecond), d, 10<<20, nil)
			require.ErrorIs(t, err, context.DeadlineExceeded)
			assert.Less(t, time.Since(start), 5*time.Second)
			assert.Equal(t, 1, s.Requests(k), "no retry once the context ended")
			assert.Equal(t, ids, listed(t, d), "entries stay")
			assert.Empty(t, s.Entries())

			_, err = newClient(s, 2).UploadStaged(ctxTimeout(t, 10*time.Second), d, 10<<20, nil)
			require.NoError(t, err)
			assertDelivered(t, s, ids, 1000)
		})
	}
}

func TestUploadUnreachableServer(t *testing.T) {
	s := newServer(t)
	base := s.URL
	s.Close()
	d := staging.Dir{Path: t.TempDir()}
	ids := []string{stage(t, d, 10, 0)}
	c := New(Options{BaseURL: base, ProjectKey: projectKey, Device: device, RetryMax: 1, RetryWait: time.Millisecond})
	_, err := c.UploadStaged(ctxTimeout(t, 10*time.Second), d, 10<<20, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "/api/v0/upload")
	assert.Equal(t, ids, listed(t, d))
}

func TestUploadKeepDrops(t *testing.T) {
	s := newServer(t)
	d := staging.Dir{Path: t.TempDir()}
	var kept []string
	for i := uint64(0); i < 4; i++ {
		id := stage(t, d, 300, i)
		if i%2 == 0 {
			kept = append(kept, id)
		}
	}
	keep := func(m *protocol.Manifest) bool { return m.CollectionTime.BootCount%2 == 0 }

	rep, err := newClient(s, 0).UploadStaged(ctxTimeout(t, 10*time.Second), d, 10<<20, keep)
	require.NoError(t, err)
	assert.Equal(t, 2, rep.Uploaded)
	assert.Equal(t, 2, rep.Dropped)
	assert.Equal(t, 1, rep.Zips)
	assertDelivered(t, s, kept, 300)
	assert.Empty(t, listed(t, d), "dropped entries are deleted")
}

func TestUploadNeverSendsIncompleteEntries(t *testing.T) {
	s := newServer(t)
	d := staging.Dir{Path: t.TempDir()}
	done := stage(t, d, 100, 0)
	e, err := d.NewEntry() // being written: attachment, no manifest yet
	require.NoError(t, err)
	f, err := e.Create("core-" + e.UUID + ".elf.gz")
	require.NoError(t, err)
	require.NoError(t, f.Close())

	rep, err := newClient(s, 0).UploadStaged(ctxTimeout(t, 10*time.Second), d, 10<<20, func(*protocol.Manifest) bool { return true })
	require.NoError(t, err)
	assert.Equal(t, Report{Uploaded: 1, Zips: 1, Bytes: rep.Bytes}, rep)
	assertDelivered(t, s, []string{done}, 100)
	assert.Equal(t, []string{e.UUID}, listed(t, d), "the unfinished entry is left alone")
}

func TestUploadDropsBrokenManifest(t *testing.T) {
	s := newServer(t)
	d := staging.Dir{Path: t.TempDir()}
	good := stage(t, d, 100, 0)
	e, err := d.NewEntry()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(e.Path, staging.ManifestName), []byte("{not json"), 0o600))

	rep, err := newClient(s, 0).UploadStaged(ctxTimeout(t, 10*time.Second), d, 10<<20, nil)
	require.NoError(t, err)
	assert.Equal(t, 1, rep.Uploaded)
	assert.Equal(t, 1, rep.Dropped)
	assertDelivered(t, s, []string{good}, 100)
	assert.Empty(t, listed(t, d))
}

func TestDeviceConfigFetchCacheFallback(t *testing.T) {
	s := newServer(t)
	cache := filepath.Join(t.TempDir(), "state", "device_config.json")
	c := newClient(s, 1)

	// No cache yet, server failing: the default, with the error.
	s.Fail(deviceapi.DeviceConfig, 2, 503)
	got, err := c.FetchDeviceConfig(ctxTimeout(t, 10*time.Second), cache)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "503")
	assert.Equal(t, DefaultDeviceConfig(), got)

	five := 5
	s.SetDeviceConfig("low", 7, &five)
	got, err = c.FetchDeviceConfig(ctxTimeout(t, 10*time.Second), cache)
	require.NoError(t, err)
	assert.Equal(t, DeviceConfig{Revision: 7, Completed: &five, DebuggingResolution: "low"}, got)
	assert.False(t, got.CoredumpsAllowed(false))
	assert.True(t, got.CoredumpsAllowed(true))
	loaded, err := LoadDeviceConfig(cache)
	require.NoError(t, err)
	assert.Equal(t, got, loaded)
	_, err = os.Stat(cache + ".tmp")
	assert.ErrorIs(t, err, os.ErrNotExist)

	// Failing server, hanging server, bad answer: the cached config, with the error.
	s.Fail(deviceapi.DeviceConfig, 2, 500)
	got, err = c.FetchDeviceConfig(ctxTimeout(t, 10*time.Second), cache)
	require.Error(t, err)
	assert.Equal(t, loaded, got)

	s.Hang(deviceapi.DeviceConfig, 1)
	got, err = c.FetchDeviceConfig(ctxTimeout(t, 200*time.Millisecond), cache)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, loaded, got)

	s.SetDeviceConfig("verbose", 8, nil)
	got, err = c.FetchDeviceConfig(ctxTimeout(t, 10*time.Second), cache)
	require.ErrorContains(t, err, "verbose")
	assert.Equal(t, loaded, got, "an answer we cannot use does not replace the cache")

	s.SetDeviceConfig("high", 9, nil)
	got, err = c.FetchDeviceConfig(ctxTimeout(t, 10*time.Second), cache)
	require.NoError(t, err)
	assert.Equal(t, DeviceConfig{Revision: 9, DebuggingResolution: "high"}, got)
	assert.Empty(t, s.Violations())
}

func TestLoadDeviceConfig(t *testing.T) {
	dir := t.TempDir()
	got, err := LoadDeviceConfig(filepath.Join(dir, "missing"))
	require.NoError(t, err)
	assert.Equal(t, "normal", got.DebuggingResolution)
	assert.True(t, got.CoredumpsAllowed(false))

	broken := filepath.Join(dir, "broken")
	require.NoError(t, os.WriteFile(broken, []byte(`{"data": {}}`), 0o600))
	got, err = LoadDeviceConfig(broken)
	require.Error(t, err)
	assert.Equal(t, DefaultDeviceConfig(), got)
}

func TestCoredumpsAllowed(t *testing.T) {
	for _, tc := range []struct {
		res           string
		normal, inDev bool
	}{
		{"off", false, true}, {"low", false, true}, {"normal", true, true}, {"high", true, true}, {"bogus", false, true},
	} {
		d := DeviceConfig{DebuggingResolution: tc.res}
		assert.Equal(t, tc.normal, d.CoredumpsAllowed(false), tc.res)
		assert.Equal(t, tc.inDev, d.CoredumpsAllowed(true), tc.res)
	}
}

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		n        int
		interval time.Duration
		want     time.Duration
	}{
		{0, time.Hour, 0},
		{-1, time.Hour, 0},
		{1, time.Hour, time.Minute},
		{2, time.Hour, 2 * time.Minute},
		{3, time.Hour, 4 * time.Minute},
		{6, time.Hour, 32 * time.Minute},
		{7, time.Hour, time.Hour},
		{1000, time.Hour, time.Hour},
		{3, 3 * time.Minute, 3 * time.Minute},
		{1, 30 * time.Second, 30 * time.Second},
		{7, 0, time.Hour},
		{1000, 0, time.Hour},
		{40, 24 * time.Hour, 24 * time.Hour},
	} {
		assert.Equal(t, tc.want, Backoff(tc.n, tc.interval), "n=%d interval=%s", tc.n, tc.interval)
	}
}

func TestSameOrigin(t *testing.T) {
	u := func(s string) *url.URL {
		p, err := url.Parse(s)
		require.NoError(t, err)
		return p
	}
	base := u("https://device.memfault.com")
	for s, want := range map[string]bool{
		"https://device.memfault.com/x?sig=1":     true,
		"https://DEVICE.memfault.com:443/x":       true,
		"http://device.memfault.com/x":            false,
		"https://device.memfault.com:8443/x":      false,
		"https://storage.example.com/bucket/key":  false,
		"https://device.memfault.com.evil.com/xx": false,
	} {
		assert.Equal(t, want, sameOrigin(base, u(s)), s)
	}
}

func TestErrorExcerptIsBounded(t *testing.T) {
	e := excerpt(strings.NewReader(strings.Repeat("x\x00\n", 1000)))
	assert.LessOrEqual(t, len(e), maxErrorExcerpt+len(" …"))
	assert.NotContains(t, e, "\x00")
	assert.NotContains(t, e, "\n")
	assert.True(t, strings.HasSuffix(e, "…"))

	var he *HTTPError
	s := newServer(t)
	s.Fail(deviceapi.Prepare, 1, 400)
	d := staging.Dir{Path: t.TempDir()}
	stage(t, d, 1, 0)
	_, err := newClient(s, 0).UploadStaged(ctxTimeout(t, 10*time.Second), d, 0, nil)
	require.True(t, errors.As(err, &he))
	assert.Equal(t, "POST "+s.URL+"/api/v0/upload: 400 Bad Request: "+`{"error":{"message":"injected 400 for prepare"}}`, err.Error())
}
