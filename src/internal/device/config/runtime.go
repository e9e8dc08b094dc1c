package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// WriteRuntime sets keys in <persist_dir>/runtime.conf, keeping the other keys there. A key is a
// dotted path ("enable_data_collection", "coredump.capture_strategy"); missing objects on the way
// are created. Values must be representable as JSON.
//
// For a Config returned by Load, the resulting configuration (all layers) is validated first and
// nothing is written when it is invalid; after a successful write c holds the new configuration.
// The file is replaced durably: temp file in the same directory, fsync, rename, fsync of the
// directory. Comments in an existing runtime.conf are not preserved.
func (c *Config) WriteRuntime(set map[string]any) error {
	if !filepath.IsAbs(c.PersistDir) {
		return &FieldError{Key: "persist_dir", Msg: fmt.Sprintf("%q is not absolute", c.PersistDir)}
	}
	path := filepath.Join(c.PersistDir, RuntimeFile)

	current := map[string]any{}
	data, err := readLayer(path)
	switch {
	case err == nil:
		if current, err = parseLayer(path, data); err != nil {
			return fmt.Errorf("update %s: %w", path, err)
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		return fmt.Errorf("update %s: %w", path, err)
	}

	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		parts := strings.Split(key, ".")
		for _, p := range parts {
			if p == "" {
				return fmt.Errorf("update %s: invalid key %q", path, key)
			}
		}
		v, err := toJSONValue(set[key])
		if err != nil {
			return fmt.Errorf("update %s: %s: %w", path, key, err)
		}
		setKey(current, parts, v)
	}

	var next *Config
	if c.base != nil {
		all := c.base.clone()
		all.merge(all.merged, current, "", path)
		next, err = decode(all)
		if err == nil {
			next.base = c.base
			err = next.Validate()
		}
		if err != nil {
			return fmt.Errorf("not writing %s: %w", path, err)
		}
	}

	out, err := marshalIndent(current)
	if err != nil {
		return fmt.Errorf("update %s: %w", path, err)
	}
	if err := writeFileDurably(path, out, 0o644); err != nil {
		return err
	}

	if next != nil {
		next.Sources = append([]string(nil), c.Sources...)
		if len(next.Sources) == 0 || next.Sources[len(next.Sources)-1] != path {
			next.Sources = append(next.Sources, path)
		}
		*c = *next
	}
	return nil
}

// toJSONValue converts v to what parseLayer would produce for it (maps, slices, json.Number...).
func toJSONValue(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		return nil, err
	}
	return out, nil
}

// setKey sets obj[parts[0]]...[parts[n-1]] = v, replacing any non-object on the way.
func setKey(obj map[string]any, parts []string, v any) {
	for _, p := range parts[:len(parts)-1] {
		next, ok := obj[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			obj[p] = next
		}
		obj = next
	}
	obj[parts[len(parts)-1]] = v
}

// writeFileDurably replaces path with data so that a crash leaves either the old or the new file.
func writeFileDurably(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
