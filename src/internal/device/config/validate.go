package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
)

// Validate checks the values (their JSON types were checked by Load). It reports every problem
// found, each as a *FieldError naming the key and the bad value, joined with errors.Join.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Key: key, Msg: fmt.Sprintf(format, args...), Source: c.origin(key)})
	}
	atLeastOne := func(key string, v uint64) {
		if v < 1 {
			bad(key, "must be at least 1, got %d", v)
		}
	}

	if !filepath.IsAbs(c.PersistDir) {
		bad("persist_dir", "%q is not absolute", c.PersistDir)
	}
	if c.TmpDir != c.PersistDir && !filepath.IsAbs(c.TmpDir) { // equal: reported as persist_dir
		bad("tmp_dir", "%q is not absolute", c.TmpDir)
	}
	if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("base_url", "%q is not an http or https URL", c.BaseURL)
	}
	if _, port, err := net.SplitHostPort(c.HTTPServer.BindAddress); err != nil {
		bad("http_server.bind_address", "%q is not host:port", c.HTTPServer.BindAddress)
	} else if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		bad("http_server.bind_address", "%q: port %q is not a number from 1 to 65535", c.HTTPServer.BindAddress, port)
	}

	switch c.Coredump.Compression {
	case CompressionGzip, CompressionNone, CompressionZstd:
	default:
		bad("coredump.compression", "unknown compression %q (want gzip, none or zstd)", c.Coredump.Compression)
	}
	atLeastOne("coredump.rate_limit_count", c.Coredump.RateLimitCount)
	switch cs := c.Coredump.CaptureStrategy; cs.Type {
	case StrategyThreads:
		atLeastOne("coredump.capture_strategy.max_thread_size_kib", cs.MaxThreadSizeKiB)
	case StrategyKernelSelection, StrategyStacktrace:
	default:
		bad("coredump.capture_strategy.type", "unknown strategy %q (want threads, kernel_selection or stacktrace)", cs.Type)
	}
	atLeastOne("coredump.core_pipe_limit", c.Coredump.CorePipeLimit)
	atLeastOne("mar.mar_file_max_size_kib", c.MAR.MarFileMaxSizeKiB)
	atLeastOne("mar.mar_entry_max_age_seconds", c.MAR.MarEntryMaxAgeSeconds)
	return errors.Join(errs...)
}

func (c *Config) origin(key string) string {
	if c.origins == nil {
		return ""
	}
	return (&layers{origins: c.origins}).origin(key)
}
