package staging

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"meta-memfault-go/internal/protocol"
)

// Info describes one entry directory.
type Info struct {
	UUID     string
	Path     string
	Complete bool      // manifest.json present
	ModTime  time.Time // of manifest.json when complete, else of the directory
	Size     int64     // bytes of all files in the entry
	Files    []string  // file names, manifest.json last when complete
}

// ReadManifest decodes the entry's manifest.json.
func (i *Info) ReadManifest() (*protocol.Manifest, error) {
	b, err := os.ReadFile(filepath.Join(i.Path, ManifestName))
	if err != nil {
		return nil, err
	}
	var m protocol.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("entry %s: manifest: %w", i.UUID, err)
	}
	return &m, nil
}

// List returns every entry directory, complete or not, oldest first (by ModTime, then UUID).
// A missing staging directory is an empty list.
func (d Dir) List() ([]Info, error) {
	des, err := os.ReadDir(d.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list staging: %w", err)
	}
	var out []Info
	for _, de := range des {
		if !de.IsDir() {
			continue
		}
		info := Info{UUID: de.Name(), Path: filepath.Join(d.Path, de.Name())}
		files, err := os.ReadDir(info.Path)
		if err != nil {
			continue // vanished meanwhile
		}
		var manifest os.FileInfo
		for _, f := range files {
			fi, err := f.Info()
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
			info.Size += fi.Size()
			if f.Name() == ManifestName {
				manifest = fi
				continue
			}
			info.Files = append(info.Files, f.Name())
		}
		if manifest != nil {
			info.Complete = true
			info.ModTime = manifest.ModTime()
			info.Files = append(info.Files, ManifestName)
		} else if fi, err := de.Info(); err == nil {
			info.ModTime = fi.ModTime()
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].ModTime.Equal(out[j].ModTime) {
			return out[i].ModTime.Before(out[j].ModTime)
		}
		return out[i].UUID < out[j].UUID
	})
	return out, nil
}
