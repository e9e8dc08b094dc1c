package upload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"meta-memfault-go/internal/device/staging"
)

// Debugging resolutions, lowest first.
const (
	ResolutionOff    = "off"
	ResolutionLow    = "low"
	ResolutionNormal = "normal"
	ResolutionHigh   = "high"
)

var resolutionRank = map[string]int{ResolutionOff: 0, ResolutionLow: 1, ResolutionNormal: 2, ResolutionHigh: 3}

// DeviceConfig is what this package uses of the device config the cloud sends.
type DeviceConfig struct {
	Revision            int
	Completed           *int   // revision the cloud knows the device applied; nil: none
	DebuggingResolution string // off, low, normal or high
}

// DefaultDeviceConfig is the config before the cloud has sent one.
func DefaultDeviceConfig() DeviceConfig { return DeviceConfig{DebuggingResolution: ResolutionNormal} }

// CoredumpsAllowed reports whether cores may be captured and uploaded: developer mode forces the
// resolution "high"; otherwise it must be at least "normal".
func (d DeviceConfig) CoredumpsAllowed(devMode bool) bool {
	if devMode {
		return true
	}
	r, ok := resolutionRank[d.DebuggingResolution]
	return ok && r >= resolutionRank[ResolutionNormal]
}

// parseDeviceConfig decodes a device-config answer:
//
//	{"data": {"config": {"memfault": {"sampling": {"debugging.resolution": "normal", ...}}},
//	          "revision": N, "completed": N|null}}
//
// A missing debugging.resolution means "normal"; an unknown one is an error (like memfaultd,
// which cannot parse it either), so the cached config stays in force.
func parseDeviceConfig(b []byte) (DeviceConfig, error) {
	var a struct {
		Data *struct {
			Config struct {
				Memfault struct {
					Sampling struct {
						Debugging *string `json:"debugging.resolution"`
					} `json:"sampling"`
				} `json:"memfault"`
			} `json:"config"`
			Revision  *int `json:"revision"`
			Completed *int `json:"completed"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return DeviceConfig{}, fmt.Errorf("device config: %w", err)
	}
	if a.Data == nil || a.Data.Revision == nil {
		return DeviceConfig{}, errors.New("device config: no data.revision")
	}
	d := DeviceConfig{Revision: *a.Data.Revision, Completed: a.Data.Completed, DebuggingResolution: ResolutionNormal}
	if r := a.Data.Config.Memfault.Sampling.Debugging; r != nil {
		if _, ok := resolutionRank[*r]; !ok {
			return DeviceConfig{}, fmt.Errorf("device config: unknown debugging.resolution %q", *r)
		}
		d.DebuggingResolution = *r
	}
	return d, nil
}

// FetchDeviceConfig POSTs {base}/api/v0/device-config {"device": {...}} and caches the answer as
// received, durably (temp file, fsync, rename), at cachePath. When the fetch or the answer
// fails, it returns the cached config (DefaultDeviceConfig without one) with the error. When
// only writing the cache fails, the fresh config is returned with a nil error and the failure
// is logged: the config is good, and the next fetch rewrites the cache.
func (c *Client) FetchDeviceConfig(ctx context.Context, cachePath string) (DeviceConfig, error) {
	raw, err := c.postJSON(ctx, "/api/v0/device-config", struct {
		Device deviceJSON `json:"device"`
	}{c.device})
	var d DeviceConfig
	if err == nil {
		d, err = parseDeviceConfig(raw)
	}
	if err != nil {
		cached, cerr := LoadDeviceConfig(cachePath)
		if cerr != nil {
			return cached, errors.Join(fmt.Errorf("fetch device config: %w", err), cerr)
		}
		return cached, fmt.Errorf("fetch device config: %w", err)
	}
	werr := os.MkdirAll(filepath.Dir(cachePath), 0o755)
	if werr == nil {
		werr = staging.WriteFileAtomic(cachePath, raw)
	}
	if werr != nil {
		c.log.Warn("cannot cache device config", "path", cachePath, "err", werr)
	}
	return d, nil
}

// LoadDeviceConfig reads the config cached by FetchDeviceConfig. Without a cache file it returns
// DefaultDeviceConfig and no error; a broken cache file returns DefaultDeviceConfig and an error.
func LoadDeviceConfig(cachePath string) (DeviceConfig, error) {
	b, err := os.ReadFile(cachePath)
	if errors.Is(err, fs.ErrNotExist) {
		return DefaultDeviceConfig(), nil
	}
	if err != nil {
		return DefaultDeviceConfig(), fmt.Errorf("cached device config: %w", err)
	}
	d, err := parseDeviceConfig(b)
	if err != nil {
		return DefaultDeviceConfig(), fmt.Errorf("cached device config %s: %w", cachePath, err)
	}
	return d, nil
}

// Backoff returns the wait after n consecutive failed syncs: 60 s, doubling, capped at interval
// (interval 0, "upload only on request", caps at 1 hour). n <= 0 gives 0.
func Backoff(n int, interval time.Duration) time.Duration {
	if n <= 0 {
		return 0
	}
	limit := interval
	if limit <= 0 {
		limit = time.Hour
	}
	d := time.Minute
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}
