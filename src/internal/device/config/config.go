// Package config loads memfaultd's layered configuration (built-in defaults, /etc/memfaultd.conf,
// <persist_dir>/runtime.conf) into a validated Config, writes runtime settings back, and
// determines the device identity.
//
// Its one job is to answer "what are the settings and who is this device" the way memfaultd does,
// so that the daemon, memfaultctl and the core handler all agree.
//
// The layering is done here rather than with viper's MergeConfigMap because viper's merge does
// not follow memfaultd's rule ("objects merge key by key, any other value replaces"): when a
// lower layer holds an object and a higher one a scalar, viper keeps the object and only logs,
// and AllSettings drops keys whose value is null (tmp_dir, software_version). Values are decoded
// strictly (a string is never silently turned into a number) so that every mistake in a file is
// reported with its key.
package config

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const (
	// DefaultPath is the configuration file read when Load is given "".
	DefaultPath = "/etc/memfaultd.conf"
	// RuntimeFile is the name, inside persist_dir, of the layer written by WriteRuntime.
	RuntimeFile = "runtime.conf"

	builtinName  = "built-in defaults"
	maxLayerSize = 4 << 20 // bytes; a configuration file is a few KiB
)

//go:embed builtin.conf
var builtinConf []byte

// Builtin returns the built-in defaults: JSON with /* */ comments documenting every key.
func Builtin() []byte { return append([]byte(nil), builtinConf...) }

// Config is the merged, validated configuration. Sizes are in KiB, durations in seconds.
type Config struct {
	PersistDir            string // persist_dir, absolute
	TmpDir                string // tmp_dir; PersistDir when null or ""; absolute
	TmpDirMinHeadroomKiB  uint64 // tmp_dir_min_headroom_kib
	TmpDirMinInodes       uint64 // tmp_dir_min_inodes
	TmpDirMaxUsageKiB     uint64 // tmp_dir_max_usage_kib
	UploadIntervalSeconds uint64 // upload_interval_seconds; 0 = only on sync
	EnableDataCollection  bool   // enable_data_collection
	EnableDevMode         bool   // enable_dev_mode
	ProjectKey            string // project_key
	BaseURL               string // base_url
	SoftwareVersion       string // software_version; "" when null
	SoftwareType          string // software_type; "" when null
	Coredump              Coredump
	HTTPServer            HTTPServer
	MAR                   MAR

	// Sources are the files that were read, in order (the built-in defaults are not a file and
	// are not listed).
	Sources []string
	// Merged is the merged JSON object, unknown keys included. Numbers are json.Number.
	Merged map[string]any

	base    *layers // built-in + /etc, before runtime.conf; nil for a Config not made by Load
	origins map[string]string
}

// Coredump is the "coredump" object.
type Coredump struct {
	CoredumpMaxSizeKiB       uint64 // coredump_max_size_kib
	Compression              string // compression: "gzip", "none" or "zstd"
	RateLimitCount           uint64 // rate_limit_count, at least 1
	RateLimitDurationSeconds uint64 // rate_limit_duration_seconds
	CaptureStrategy          CaptureStrategy
	LogLines                 uint64 // log_lines
	CorePipeLimit            uint64 // core_pipe_limit (ours), at least 1
}

// Capture strategy types.
const (
	StrategyThreads         = "threads"
	StrategyKernelSelection = "kernel_selection"
	StrategyStacktrace      = "stacktrace"
)

// Compression values.
const (
	CompressionGzip = "gzip"
	CompressionNone = "none"
	CompressionZstd = "zstd"
)

// CaptureStrategy is coredump.capture_strategy.
type CaptureStrategy struct {
	Type             string // "threads", "kernel_selection" or "stacktrace"
	MaxThreadSizeKiB uint64 // max_thread_size_kib; used (and checked) by "threads" only
}

// HTTPServer is the "http_server" object.
type HTTPServer struct {
	BindAddress string // bind_address, host:port
}

// MAR is the "mar" object.
type MAR struct {
	MarFileMaxSizeKiB     uint64 // mar_file_max_size_kib, at least 1
	MarEntryMaxAgeSeconds uint64 // mar_entry_max_age_seconds, at least 1
}

// FieldError is a problem with one key of the merged configuration.
type FieldError struct {
	Key    string // dotted path, e.g. "coredump.rate_limit_count"
	Msg    string // what is wrong, naming the bad value
	Source string // the file that set the value, when known and not the built-in defaults
}

func (e *FieldError) Error() string {
	if e.Source == "" {
		return e.Key + ": " + e.Msg
	}
	return e.Key + ": " + e.Msg + " (set in " + e.Source + ")"
}

// Load reads the built-in defaults, then the file at path ("" means DefaultPath, which may be
// missing; an explicit path must exist), then <persist_dir>/runtime.conf if it exists, with
// persist_dir as set by the first two layers. Objects merge key by key; any other value replaces.
// The result is validated; all problems found are reported together.
func Load(path string) (*Config, error) {
	return load(path, DefaultPath)
}

func load(path, defaultPath string) (*Config, error) {
	base := newLayers()
	if err := base.addText(builtinName, builtinConf); err != nil {
		return nil, fmt.Errorf("built-in defaults: %w", err)
	}
	var sources []string

	explicit := path != ""
	if !explicit {
		path = defaultPath
	}
	data, err := readLayer(path)
	switch {
	case err == nil:
		if err := base.addText(path, data); err != nil {
			return nil, err
		}
		sources = append(sources, path)
	case !explicit && errors.Is(err, fs.ErrNotExist):
	default:
		return nil, err
	}

	all := base.clone()
	// A persist_dir that is not an absolute string is reported by decode/Validate; do not look
	// for runtime.conf relative to the working directory.
	if dir, ok := base.merged["persist_dir"].(string); ok && filepath.IsAbs(dir) {
		rpath := filepath.Join(dir, RuntimeFile)
		data, err := readLayer(rpath)
		switch {
		case err == nil:
			if err := all.addText(rpath, data); err != nil {
				return nil, err
			}
			sources = append(sources, rpath)
		case errors.Is(err, fs.ErrNotExist):
		default:
			return nil, err
		}
	}

	c, err := decode(all)
	if err != nil {
		return nil, err
	}
	c.Sources = sources
	c.base = base
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func readLayer(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxLayerSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxLayerSize {
		return nil, fmt.Errorf("read %s: larger than %d bytes", path, maxLayerSize)
	}
	return data, nil
}

// layers is a merged JSON object and, for every leaf, the layer that set it.
type layers struct {
	merged  map[string]any
	origins map[string]string // dotted key -> layer name
}

func newLayers() *layers {
	return &layers{merged: map[string]any{}, origins: map[string]string{}}
}

func (l *layers) clone() *layers {
	o := make(map[string]string, len(l.origins))
	for k, v := range l.origins {
		o[k] = v
	}
	return &layers{merged: deepCopy(l.merged).(map[string]any), origins: o}
}

func (l *layers) addText(name string, data []byte) error {
	obj, err := parseLayer(name, data)
	if err != nil {
		return err
	}
	l.merge(l.merged, obj, "", name)
	return nil
}

// merge applies src over dst: where both hold an object the objects merge key by key, otherwise
// src's value replaces dst's (null, arrays and an object over a non-object included).
func (l *layers) merge(dst, src map[string]any, prefix, source string) {
	for k, sv := range src {
		key := joinKey(prefix, k)
		if so, ok := sv.(map[string]any); ok {
			if do, ok := dst[k].(map[string]any); ok {
				l.merge(do, so, key, source)
				continue
			}
		}
		l.forget(key)
		dst[k] = deepCopy(sv)
		l.record(key, sv, source)
	}
}

func (l *layers) forget(key string) {
	delete(l.origins, key)
	for k := range l.origins {
		if strings.HasPrefix(k, key+".") {
			delete(l.origins, k)
		}
	}
}

func (l *layers) record(key string, v any, source string) {
	obj, ok := v.(map[string]any)
	if !ok || len(obj) == 0 {
		l.origins[key] = source
		return
	}
	for k, sv := range obj {
		l.record(joinKey(key, k), sv, source)
	}
}

// origin returns the layer that set key (or its nearest enclosing key), "" for the built-in
// defaults or when unknown.
func (l *layers) origin(key string) string {
	for {
		if s, ok := l.origins[key]; ok {
			if s == builtinName {
				return ""
			}
			return s
		}
		i := strings.LastIndexByte(key, '.')
		if i < 0 {
			return ""
		}
		key = key[:i]
	}
}

func joinKey(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		s := make([]any, len(v))
		for i, e := range v {
			s[i] = deepCopy(e)
		}
		return s
	default:
		return v
	}
}

// decode turns the merged object into a Config, checking the JSON type of every known key.
func decode(l *layers) (*Config, error) {
	d := &decoder{l: l, reported: map[string]bool{}}
	c := &Config{
		PersistDir:            d.path("persist_dir", false),
		TmpDir:                d.path("tmp_dir", true),
		TmpDirMinHeadroomKiB:  d.uint("tmp_dir_min_headroom_kib"),
		TmpDirMinInodes:       d.uint("tmp_dir_min_inodes"),
		TmpDirMaxUsageKiB:     d.uint("tmp_dir_max_usage_kib"),
		UploadIntervalSeconds: d.uint("upload_interval_seconds"),
		EnableDataCollection:  d.bool("enable_data_collection"),
		EnableDevMode:         d.bool("enable_dev_mode"),
		ProjectKey:            d.str("project_key", false),
		BaseURL:               d.str("base_url", false),
		SoftwareVersion:       d.str("software_version", true),
		SoftwareType:          d.str("software_type", true),
		Coredump: Coredump{
			CoredumpMaxSizeKiB:       d.uint("coredump.coredump_max_size_kib"),
			Compression:              d.str("coredump.compression", false),
			RateLimitCount:           d.uint("coredump.rate_limit_count"),
			RateLimitDurationSeconds: d.uint("coredump.rate_limit_duration_seconds"),
			CaptureStrategy: CaptureStrategy{
				Type:             d.str("coredump.capture_strategy.type", false),
				MaxThreadSizeKiB: d.uint("coredump.capture_strategy.max_thread_size_kib"),
			},
			LogLines:      d.uint("coredump.log_lines"),
			CorePipeLimit: d.uint("coredump.core_pipe_limit"),
		},
		HTTPServer: HTTPServer{BindAddress: d.str("http_server.bind_address", false)},
		MAR: MAR{
			MarFileMaxSizeKiB:     d.uint("mar.mar_file_max_size_kib"),
			MarEntryMaxAgeSeconds: d.uint("mar.mar_entry_max_age_seconds"),
		},
		Merged:  l.merged,
		origins: l.origins,
	}
	if err := errors.Join(d.errs...); err != nil {
		return nil, err
	}
	if c.TmpDir == "" {
		c.TmpDir = c.PersistDir
	}
	return c, nil
}

type decoder struct {
	l        *layers
	errs     []error
	reported map[string]bool // keys already reported, so a bad object is named once
}

func (d *decoder) fail(key, format string, args ...any) {
	if d.reported[key] {
		return
	}
	d.reported[key] = true
	d.errs = append(d.errs, &FieldError{Key: key, Msg: fmt.Sprintf(format, args...), Source: d.l.origin(key)})
}

func (d *decoder) lookup(key string) (any, bool) {
	parts := strings.Split(key, ".")
	var cur any = d.l.merged
	for i, p := range parts {
		obj, ok := cur.(map[string]any)
		if !ok {
			d.fail(strings.Join(parts[:i], "."), "want an object, got %s", describe(cur))
			return nil, false
		}
		if cur, ok = obj[p]; !ok {
			d.fail(key, "missing")
			return nil, false
		}
	}
	return cur, true
}

func (d *decoder) str(key string, nullable bool) string {
	v, ok := d.lookup(key)
	if !ok {
		return ""
	}
	switch v := v.(type) {
	case string:
		return v
	case nil:
		if nullable {
			return ""
		}
	}
	if nullable {
		d.fail(key, "want a string or null, got %s", describe(v))
	} else {
		d.fail(key, "want a string, got %s", describe(v))
	}
	return ""
}

func (d *decoder) path(key string, nullable bool) string {
	p := d.str(key, nullable)
	if p == "" {
		return ""
	}
	return filepath.Clean(p)
}

func (d *decoder) uint(key string) uint64 {
	v, ok := d.lookup(key)
	if !ok {
		return 0
	}
	if n, ok := v.(json.Number); ok {
		if u, err := strconv.ParseUint(string(n), 10, 64); err == nil {
			return u
		}
	}
	d.fail(key, "want a non-negative integer, got %s", describe(v))
	return 0
}

func (d *decoder) bool(key string) bool {
	v, ok := d.lookup(key)
	if !ok {
		return false
	}
	if b, ok := v.(bool); ok {
		return b
	}
	d.fail(key, "want true or false, got %s", describe(v))
	return false
}

// describe names a JSON value and its type for an error message.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("string %q", v)
	case json.Number:
		return "number " + string(v)
	case bool:
		return fmt.Sprintf("%t", v)
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	default:
		return fmt.Sprintf("%T %v", v, v)
	}
}
