package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeFile creates path (and its directories) with content.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

// fixture writes <tmp>/etc/memfaultd.conf (etc, with PERSIST replaced by <tmp>/persist) and,
// when runtime is not "", <tmp>/persist/runtime.conf. It returns the conf path and persist dir.
func fixture(t *testing.T, etc, runtime string) (conf, persist string) {
	t.Helper()
	dir := t.TempDir()
	persist = filepath.Join(dir, "persist")
	conf = filepath.Join(dir, "etc", "memfaultd.conf")
	writeFile(t, conf, strings.ReplaceAll(etc, "PERSIST", persist))
	if runtime != "" {
		writeFile(t, filepath.Join(persist, RuntimeFile), runtime)
	}
	return conf, persist
}

func defaults() Config {
	return Config{
		PersistDir:            "/media/memfault",
		TmpDir:                "/media/memfault",
		TmpDirMinHeadroomKiB:  10240,
		TmpDirMinInodes:       100,
		TmpDirMaxUsageKiB:     102400,
		UploadIntervalSeconds: 3600,
		EnableDataCollection:  false,
		EnableDevMode:         false,
		ProjectKey:            "",
		BaseURL:               "https://device.memfault.com",
		Coredump: Coredump{
			CoredumpMaxSizeKiB:       96000,
			Compression:              "gzip",
			RateLimitCount:           5,
			RateLimitDurationSeconds: 3600,
			CaptureStrategy:          CaptureStrategy{Type: "threads", MaxThreadSizeKiB: 32},
			LogLines:                 100,
			CorePipeLimit:            4,
		},
		HTTPServer: HTTPServer{BindAddress: "127.0.0.1:8787"},
		MAR:        MAR{MarFileMaxSizeKiB: 10240, MarEntryMaxAgeSeconds: 604800},
	}
}

// values is c without the bookkeeping fields, for comparison with defaults().
func values(c *Config) Config {
	v := *c
	v.Sources, v.Merged, v.base, v.origins = nil, nil, nil, nil
	return v
}

func TestLoadDefaultsOnly(t *testing.T) {
	if _, err := os.Stat("/media/memfault/" + RuntimeFile); err == nil {
		t.Skip("this host has /media/memfault/runtime.conf, which the defaults-only load would read")
	}
	c, err := load("", filepath.Join(t.TempDir(), "memfaultd.conf"))
	require.NoError(t, err)
	assert.Equal(t, defaults(), values(c))
	assert.Empty(t, c.Sources)
	assert.Contains(t, c.Merged, "tmp_dir")
	assert.Nil(t, c.Merged["tmp_dir"], "null defaults stay null in Merged")
	assert.Nil(t, c.Merged["software_version"])
}

func TestLoadExplicitPathMustExist(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.conf"))
	require.Error(t, err)
	assert.ErrorIs(t, err, fs.ErrNotExist)
}

func TestLoadLayers(t *testing.T) {
	tests := []struct {
		name    string
		etc     string
		runtime string
		check   func(t *testing.T, c *Config, persist string)
	}{
		{
			name: "etc layer",
			etc:  `{"persist_dir": "PERSIST", "project_key": "abc", "coredump": {"compression": "zstd"}}`,
			check: func(t *testing.T, c *Config, persist string) {
				want := defaults()
				want.PersistDir, want.TmpDir = persist, persist
				want.ProjectKey = "abc"
				want.Coredump.Compression = "zstd"
				assert.Equal(t, want, values(c))
			},
		},
		{
			name:    "runtime overrides one nested key and keeps siblings",
			etc:     `{"persist_dir": "PERSIST", "coredump": {"rate_limit_count": 7, "log_lines": 50}}`,
			runtime: `{"coredump": {"rate_limit_count": 2}, "enable_data_collection": true}`,
			check: func(t *testing.T, c *Config, persist string) {
				want := defaults()
				want.PersistDir, want.TmpDir = persist, persist
				want.EnableDataCollection = true
				want.Coredump.RateLimitCount = 2 // runtime
				want.Coredump.LogLines = 50      // etc, sibling kept
				assert.Equal(t, want, values(c))
				cd := c.Merged["coredump"].(map[string]any)
				assert.Equal(t, json.Number("96000"), cd["coredump_max_size_kib"])
				assert.Equal(t, json.Number("50"), cd["log_lines"])
			},
		},
		{
			name:    "runtime changes the strategy type, max_thread_size_kib kept",
			etc:     `{"persist_dir": "PERSIST", "coredump": {"capture_strategy": {"max_thread_size_kib": 64}}}`,
			runtime: `{"coredump": {"capture_strategy": {"type": "kernel_selection"}}}`,
			check: func(t *testing.T, c *Config, _ string) {
				assert.Equal(t, CaptureStrategy{Type: "kernel_selection", MaxThreadSizeKiB: 64}, c.Coredump.CaptureStrategy)
			},
		},
		{
			name: "tmp_dir set",
			etc:  `{"persist_dir": "PERSIST", "tmp_dir": "/run/memfault/"}`,
			check: func(t *testing.T, c *Config, persist string) {
				assert.Equal(t, persist, c.PersistDir)
				assert.Equal(t, "/run/memfault", c.TmpDir)
			},
		},
		{
			name: "empty tmp_dir means persist_dir",
			etc:  `{"persist_dir": "PERSIST", "tmp_dir": ""}`,
			check: func(t *testing.T, c *Config, persist string) {
				assert.Equal(t, persist, c.TmpDir)
			},
		},
		{
			name:    "null replaces a string",
			etc:     `{"persist_dir": "PERSIST", "software_version": "1.0", "software_type": "main"}`,
			runtime: `{"software_version": null}`,
			check: func(t *testing.T, c *Config, _ string) {
				assert.Equal(t, "", c.SoftwareVersion)
				assert.Equal(t, "main", c.SoftwareType)
			},
		},
		{
			name:    "unknown keys kept; arrays replace; object replaces scalar",
			etc:     `{"persist_dir": "PERSIST", "heartbeat_interval_seconds": 60, "list": [1, 2], "thing": 1, "metrics": {"enable_daemon_metrics": true}}`,
			runtime: `{"list": [3], "thing": {"a": "b"}, "metrics": {"x": 1}}`,
			check: func(t *testing.T, c *Config, _ string) {
				assert.Equal(t, json.Number("60"), c.Merged["heartbeat_interval_seconds"])
				assert.Equal(t, []any{json.Number("3")}, c.Merged["list"])
				assert.Equal(t, map[string]any{"a": "b"}, c.Merged["thing"])
				assert.Equal(t, map[string]any{"enable_daemon_metrics": true, "x": json.Number("1")}, c.Merged["metrics"])
			},
		},
		{
			name:    "empty runtime object changes nothing",
			etc:     `{"persist_dir": "PERSIST", "coredump": {"log_lines": 5}}`,
			runtime: `{"coredump": {}}`,
			check: func(t *testing.T, c *Config, _ string) {
				assert.Equal(t, uint64(5), c.Coredump.LogLines)
				assert.Equal(t, uint64(5), c.Coredump.RateLimitCount)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf, persist := fixture(t, tt.etc, tt.runtime)
			c, err := Load(conf)
			require.NoError(t, err)
			want := []string{conf}
			if tt.runtime != "" {
				want = append(want, filepath.Join(persist, RuntimeFile))
			}
			assert.Equal(t, want, c.Sources)
			tt.check(t, c, persist)
		})
	}
}

func TestComments(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want map[string]any
	}{
		{"none", `{"a": 1}`, map[string]any{"a": json.Number("1")}},
		{"before and after", "/* head\n   more */ {\"a\": 1} /* tail */\n", map[string]any{"a": json.Number("1")}},
		{"between tokens", `{/*x*/"a"/*x*/:/*x*/true/*x*/,"b":null}`, map[string]any{"a": true, "b": nil}},
		{"comment markers inside strings", `{"a": "x/*y*/z", "b": "/*", "c": "*/"}`, map[string]any{"a": "x/*y*/z", "b": "/*", "c": "*/"}},
		{"escaped quote before a marker", `{"a": "q\"/*", /* "real comment */ "b": "\\"}`, map[string]any{"a": `q"/*`, "b": `\`}},
		{"quote inside a comment", `{/* "a": 1, */ "b": 2}`, map[string]any{"b": json.Number("2")}},
		{"stars", `{/***/ "a": /** x **/ 1}`, map[string]any{"a": json.Number("1")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseLayer("test.conf", []byte(tt.in))
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestSyntaxErrors(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		line, col  int
		msgContain string
	}{
		{"missing comma", "{\n  \"a\": 1\n  \"b\": 2\n}\n", 3, 3, "invalid character '\"' after object key:value pair"},
		{"error after a multi-line comment", "/*\n\n*/{\n\"a\": tru }", 4, 9, "invalid character ' '"},
		{"unterminated comment", "{\"a\": 1,\n /* oops\n}", 2, 2, "unterminated /* comment"},
		{"line comments are not allowed", "{\n// no\n}", 2, 1, "invalid character '/'"},
		{"empty", "  /* only a comment */\n", 2, 1, "the file is empty"},
		{"truncated", "{\"a\": [1,", 1, 10, "unexpected end of file"},
		{"array at top level", "\n[1]", 2, 1, "want a JSON object at the top level, got an array"},
		{"trailing data", "{}\n{}", 2, 1, "unexpected data after the top-level object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf, _ := fixture(t, tt.in, "")
			_, err := Load(conf)
			var se *SyntaxError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, conf, se.File)
			assert.Equal(t, tt.line, se.Line, "line")
			assert.Equal(t, tt.col, se.Column, "column")
			assert.Contains(t, se.Msg, tt.msgContain)
			assert.Contains(t, err.Error(), "parse "+conf+": line ")
		})
	}
}

func TestSyntaxErrorInRuntimeConf(t *testing.T) {
	conf, persist := fixture(t, `{"persist_dir": "PERSIST"}`, "{\n\"enable_data_collection\": yes}")
	_, err := Load(conf)
	var se *SyntaxError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, filepath.Join(persist, RuntimeFile), se.File)
	assert.Equal(t, 2, se.Line)
}

func TestValidationErrors(t *testing.T) {
	tests := []struct {
		name    string
		etc     string // PERSIST is replaced by an absolute directory
		runtime string
		want    []string // one per problem reported; PERSIST is replaced as in etc
	}{
		{"relative persist_dir", `{"persist_dir": "media/x"}`, "",
			[]string{`persist_dir: "media/x" is not absolute`}},
		{"relative tmp_dir", `{"persist_dir": "PERSIST", "tmp_dir": "tmp"}`, "",
			[]string{`tmp_dir: "tmp" is not absolute`}},
		{"unknown strategy", `{"persist_dir": "PERSIST", "coredump": {"capture_strategy": {"type": "thread"}}}`, "",
			[]string{`coredump.capture_strategy.type: unknown strategy "thread" (want threads, kernel_selection or stacktrace)`}},
		{"zero max_thread_size_kib", `{"persist_dir": "PERSIST", "coredump": {"capture_strategy": {"max_thread_size_kib": 0}}}`, "",
			[]string{`coredump.capture_strategy.max_thread_size_kib: must be at least 1, got 0`}},
		{"zero rate_limit_count", `{"persist_dir": "PERSIST", "coredump": {"rate_limit_count": 0}}`, "",
			[]string{`coredump.rate_limit_count: must be at least 1, got 0`}},
		{"unknown compression", `{"persist_dir": "PERSIST", "coredump": {"compression": "bz2"}}`, "",
			[]string{`coredump.compression: unknown compression "bz2" (want gzip, none or zstd)`}},
		{"zero core_pipe_limit", `{"persist_dir": "PERSIST", "coredump": {"core_pipe_limit": 0}}`, "",
			[]string{`coredump.core_pipe_limit: must be at least 1, got 0`}},
		{"zero mar sizes", `{"persist_dir": "PERSIST", "mar": {"mar_file_max_size_kib": 0, "mar_entry_max_age_seconds": 0}}`, "",
			[]string{`mar.mar_file_max_size_kib: must be at least 1, got 0`, `mar.mar_entry_max_age_seconds: must be at least 1, got 0`}},
		{"base_url without scheme", `{"persist_dir": "PERSIST", "base_url": "device.memfault.com"}`, "",
			[]string{`base_url: "device.memfault.com" is not an http or https URL`}},
		{"bind_address without port", `{"persist_dir": "PERSIST", "http_server": {"bind_address": "localhost"}}`, "",
			[]string{`http_server.bind_address: "localhost" is not host:port`}},
		{"bind_address port 0", `{"persist_dir": "PERSIST", "http_server": {"bind_address": "127.0.0.1:0"}}`, "",
			[]string{`http_server.bind_address: "127.0.0.1:0": port "0" is not a number from 1 to 65535`}},
		{"string where a number is expected", `{"persist_dir": "PERSIST", "coredump": {"rate_limit_count": "5"}}`, "",
			[]string{`coredump.rate_limit_count: want a non-negative integer, got string "5"`}},
		{"negative number", `{"persist_dir": "PERSIST", "upload_interval_seconds": -1}`, "",
			[]string{`upload_interval_seconds: want a non-negative integer, got number -1`}},
		{"fraction", `{"persist_dir": "PERSIST", "coredump": {"log_lines": 1.5}}`, "",
			[]string{`coredump.log_lines: want a non-negative integer, got number 1.5`}},
		{"string where a bool is expected", `{"persist_dir": "PERSIST", "enable_dev_mode": "yes"}`, "",
			[]string{`enable_dev_mode: want true or false, got string "yes"`}},
		{"number where a string is expected", `{"persist_dir": 5}`, "",
			[]string{`persist_dir: want a string, got number 5`}},
		{"null where a string is expected", `{"persist_dir": "PERSIST", "project_key": null}`, "",
			[]string{`project_key: want a string, got null`}},
		{"number where string or null is expected", `{"persist_dir": "PERSIST", "software_type": 1}`, "",
			[]string{`software_type: want a string or null, got number 1`}},
		{"scalar where an object is expected", `{"persist_dir": "PERSIST", "coredump": {"capture_strategy": "threads"}}`, "",
			[]string{`coredump.capture_strategy: want an object, got string "threads"`}},
		{"several problems reported together", `{"persist_dir": "PERSIST", "coredump": {"compression": "lz4", "rate_limit_count": 0}, "tmp_dir": "x"}`, "",
			[]string{`coredump.compression: unknown compression "lz4"`, `coredump.rate_limit_count: must be at least 1, got 0`, `tmp_dir: "x" is not absolute`}},
		{"the file that set the value is named", `{"persist_dir": "PERSIST"}`, `{"coredump": {"rate_limit_count": 0}}`,
			[]string{`coredump.rate_limit_count: must be at least 1, got 0 (set in PERSIST/` + RuntimeFile + ")"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf, persist := fixture(t, tt.etc, tt.runtime)
			_, err := Load(conf)
			require.Error(t, err)
			var fe *FieldError
			assert.ErrorAs(t, err, &fe)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), strings.ReplaceAll(w, "PERSIST", persist))
			}
			assert.Len(t, strings.Split(err.Error(), "\n"), len(tt.want), "one line per problem: %q", err.Error())
		})
	}
}

func TestValidateAcceptsAllowedValues(t *testing.T) {
	tests := []struct {
		name   string
		modify func(c *Config)
	}{
		{"defaults", func(c *Config) {}},
		{"kernel_selection ignores max_thread_size_kib", func(c *Config) {
			c.Coredump.CaptureStrategy = CaptureStrategy{Type: "kernel_selection"}
		}},
		{"stacktrace", func(c *Config) { c.Coredump.CaptureStrategy.Type = "stacktrace" }},
		{"no compression", func(c *Config) { c.Coredump.Compression = "none" }},
		{"zstd", func(c *Config) { c.Coredump.Compression = "zstd" }},
		{"http base_url, ipv6 bind address", func(c *Config) {
			c.BaseURL = "http://10.0.0.1:8000"
			c.HTTPServer.BindAddress = "[::1]:8787"
		}},
		{"upload only on sync", func(c *Config) { c.UploadIntervalSeconds = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := defaults()
			tt.modify(&c)
			assert.NoError(t, c.Validate())
		})
	}
}

func TestValidateHandMadeConfigNeedsTmpDir(t *testing.T) {
	c := defaults()
	c.TmpDir = ""
	assert.EqualError(t, c.Validate(), `tmp_dir: "" is not absolute`)
}

func TestWriteRuntime(t *testing.T) {
	conf, persist := fixture(t, `{"persist_dir": "PERSIST", "coredump": {"log_lines": 7}}`,
		"/* kept? no: comments are not preserved */ {\"vendor_key\": {\"a\": 1}, \"coredump\": {\"rate_limit_count\": 3}}")
	runtime := filepath.Join(persist, RuntimeFile)
	c, err := Load(conf)
	require.NoError(t, err)
	require.Equal(t, []string{conf, runtime}, c.Sources)

	require.NoError(t, c.WriteRuntime(map[string]any{
		"enable_data_collection":                 true,
		"coredump.capture_strategy.type":         "kernel_selection",
		"coredump.rate_limit_duration_seconds":   uint64(60),
		"new_section.nested.flag":                false,
		"coredump.capture_strategy.unknown_knob": []string{"x"},
	}))
	assert.True(t, c.EnableDataCollection, "c holds the new configuration")
	assert.Equal(t, "kernel_selection", c.Coredump.CaptureStrategy.Type)
	assert.Equal(t, []string{conf, runtime}, c.Sources)

	again, err := Load(conf)
	require.NoError(t, err)
	assert.Equal(t, values(c), values(again), "what was written is what is loaded")
	assert.Equal(t, c.Merged, again.Merged)
	assert.True(t, again.EnableDataCollection)
	assert.Equal(t, uint64(3), again.Coredump.RateLimitCount, "other runtime keys kept")
	assert.Equal(t, uint64(7), again.Coredump.LogLines, "etc keys untouched")
	assert.Equal(t, uint64(60), again.Coredump.RateLimitDurationSeconds)
	assert.Equal(t, uint64(32), again.Coredump.CaptureStrategy.MaxThreadSizeKiB)
	assert.Equal(t, map[string]any{"a": json.Number("1")}, again.Merged["vendor_key"])

	// The file holds only the runtime layer.
	raw, err := os.ReadFile(runtime)
	require.NoError(t, err)
	var file map[string]any
	require.NoError(t, json.Unmarshal(raw, &file))
	assert.Equal(t, map[string]any{
		"vendor_key":             map[string]any{"a": 1.0},
		"enable_data_collection": true,
		"new_section":            map[string]any{"nested": map[string]any{"flag": false}},
		"coredump": map[string]any{
			"rate_limit_count":            3.0,
			"rate_limit_duration_seconds": 60.0,
			"capture_strategy":            map[string]any{"type": "kernel_selection", "unknown_knob": []any{"x"}},
		},
	}, file)

	// Turning it off again replaces the value.
	require.NoError(t, c.WriteRuntime(map[string]any{"enable_data_collection": false}))
	again, err = Load(conf)
	require.NoError(t, err)
	assert.False(t, again.EnableDataCollection)

	entries, err := os.ReadDir(persist)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary files left behind")
	assert.Equal(t, RuntimeFile, entries[0].Name())
}

func TestWriteRuntimeCreatesPersistDir(t *testing.T) {
	conf, persist := fixture(t, `{"persist_dir": "PERSIST"}`, "")
	c, err := Load(conf)
	require.NoError(t, err)
	require.NoError(t, c.WriteRuntime(map[string]any{"enable_dev_mode": true}))
	assert.Equal(t, []string{conf, filepath.Join(persist, RuntimeFile)}, c.Sources)
	again, err := Load(conf)
	require.NoError(t, err)
	assert.True(t, again.EnableDevMode)
}

func TestWriteRuntimeRefuses(t *testing.T) {
	tests := []struct {
		name string
		set  map[string]any
		want string
	}{
		{"invalid value", map[string]any{"coredump.compression": "bz2"}, `coredump.compression: unknown compression "bz2"`},
		{"wrong type", map[string]any{"enable_data_collection": "true"}, `enable_data_collection: want true or false, got string "true"`},
		{"empty key segment", map[string]any{"coredump..log_lines": 1}, `invalid key "coredump..log_lines"`},
		{"not JSON", map[string]any{"x": make(chan int)}, "x: json: unsupported type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const before = `{"enable_data_collection": true}`
			conf, persist := fixture(t, `{"persist_dir": "PERSIST"}`, before)
			c, err := Load(conf)
			require.NoError(t, err)
			err = c.WriteRuntime(tt.set)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			raw, err := os.ReadFile(filepath.Join(persist, RuntimeFile))
			require.NoError(t, err)
			assert.Equal(t, before, string(raw), "file unchanged")
			assert.True(t, c.EnableDataCollection, "config unchanged")
		})
	}
}

func TestWriteRuntimeHandMadeConfig(t *testing.T) {
	c := defaults()
	c.PersistDir = t.TempDir()
	c.TmpDir = c.PersistDir
	require.NoError(t, c.WriteRuntime(map[string]any{"enable_data_collection": true}))
	raw, err := os.ReadFile(filepath.Join(c.PersistDir, RuntimeFile))
	require.NoError(t, err)
	assert.JSONEq(t, `{"enable_data_collection": true}`, string(raw))

	c.PersistDir = "relative"
	assert.EqualError(t, c.WriteRuntime(map[string]any{"a": 1}), `persist_dir: "relative" is not absolute`)
}

func TestShowSettings(t *testing.T) {
	conf, persist := fixture(t, `{"persist_dir": "PERSIST", "project_key": "k", "unknown_key": [1], "base_url": "https://x.test/?a=1&b=<2>"}`,
		`{"enable_data_collection": true}`)
	c, err := Load(conf)
	require.NoError(t, err)
	var b bytes.Buffer
	require.NoError(t, c.ShowSettings(&b, DeviceInfo{DeviceID: "dev1", HardwareVersion: "evt", SoftwareVersion: "1.2", SoftwareType: "main"}))
	out := b.String()

	head, rest, ok := strings.Cut(out, "\nMerged configuration:\n")
	require.True(t, ok, out)
	assert.Equal(t, "Configuration sources (later ones override earlier ones):\n"+
		"  built-in defaults\n  "+conf+"\n  "+filepath.Join(persist, RuntimeFile)+"\n", head)
	js, tail, ok := strings.Cut(rest, "\n\nDevice identity:\n")
	require.True(t, ok, out)
	assert.Equal(t, "  MEMFAULT_DEVICE_ID=dev1\n  MEMFAULT_HARDWARE_VERSION=evt\n"+
		"  MEMFAULT_SOFTWARE_VERSION=1.2\n  MEMFAULT_SOFTWARE_TYPE=main\n", tail)

	var merged map[string]any
	require.NoError(t, json.Unmarshal([]byte(js), &merged))
	assert.Equal(t, true, merged["enable_data_collection"])
	assert.Equal(t, "k", merged["project_key"])
	assert.Equal(t, []any{1.0}, merged["unknown_key"])
	assert.Contains(t, merged, "tmp_dir")
	assert.Nil(t, merged["tmp_dir"])
	assert.Contains(t, js, "\n  \"coredump\": {\n    \"capture_strategy\": {", "indented, keys sorted")
	assert.Contains(t, js, `"base_url": "https://x.test/?a=1&b=<2>"`, "no HTML escaping")
}

func TestBuiltinIsCommentedJSON(t *testing.T) {
	b := Builtin()
	assert.True(t, bytes.HasPrefix(b, []byte("/*")), "starts with its documentation")
	obj, err := parseLayer("builtin.conf", b)
	require.NoError(t, err)
	for _, k := range []string{"persist_dir", "tmp_dir", "coredump", "http_server", "mar"} {
		assert.Contains(t, obj, k)
	}
	b[0] = 'x'
	assert.Equal(t, byte('/'), Builtin()[0], "Builtin returns a copy")
}

func TestOriginOfAReplacedObject(t *testing.T) {
	l := newLayers()
	require.NoError(t, l.addText(builtinName, []byte(`{"a": {"b": 1, "c": 2}}`)))
	require.NoError(t, l.addText("etc", []byte(`{"a": "flat"}`)))
	require.NoError(t, l.addText("run", []byte(`{"a": {"b": 3}}`)))
	assert.Equal(t, map[string]any{"a": map[string]any{"b": json.Number("3")}}, l.merged)
	assert.Equal(t, "run", l.origin("a.b"))
	assert.Equal(t, "", l.origin("a.c"), "gone with the replaced object")
	assert.Equal(t, map[string]string{"a.b": "run"}, l.origins)
	assert.False(t, errors.Is(nil, fs.ErrNotExist))
}
