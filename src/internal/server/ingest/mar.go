package ingest

import (
	"archive/zip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"regexp"
	"strings"
	"time"

	"meta-memfault-go/internal/protocol"
	"meta-memfault-go/internal/server/store"
)

var uuidRe = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// marEntry is one validated entry of a MAR zip.
type marEntry struct {
	uuid     string
	manifest protocol.Manifest
	raw      []byte
	files    map[string]*zip.File
	core     *zip.File // the elf-coredump attachment
	compress string
}

const maxManifest = 1 << 20

// readMAR validates a whole MAR zip before anything is stored: names are <uuid>/<file> with
// no path tricks, sizes are within limits, every entry has a manifest that parses and names
// files present in the zip.
func (s *Server) readMAR(zr *zip.Reader) ([]*marEntry, error) {
	if len(zr.File) > s.cfg.MaxEntries {
		return nil, fmt.Errorf("%d files in the zip, limit %d", len(zr.File), s.cfg.MaxEntries)
	}
	byUUID := map[string]*marEntry{}
	var order []string
	for _, f := range zr.File {
		name := f.Name
		if strings.HasSuffix(name, "/") && f.UncompressedSize64 == 0 {
			continue // directory record
		}
		if name != path.Clean(name) || path.IsAbs(name) || strings.Contains(name, "\\") || strings.HasPrefix(name, "../") {
			return nil, fmt.Errorf("zip member %q: not a plain relative path", name)
		}
		dir, file, ok := strings.Cut(name, "/")
		if !ok || strings.Contains(file, "/") || !uuidRe.MatchString(dir) || file == "" || file == "." || file == ".." {
			return nil, fmt.Errorf("zip member %q: want <uuid>/<file>", name)
		}
		if f.UncompressedSize64 > uint64(s.cfg.MaxEntry) {
			return nil, fmt.Errorf("zip member %q: %d bytes, limit %d", name, f.UncompressedSize64, s.cfg.MaxEntry)
		}
		if f.Method != zip.Store && f.Method != zip.Deflate {
			return nil, fmt.Errorf("zip member %q: compression method %d not supported", name, f.Method)
		}
		e := byUUID[dir]
		if e == nil {
			e = &marEntry{uuid: dir, files: map[string]*zip.File{}}
			byUUID[dir] = e
			order = append(order, dir)
		}
		if _, dup := e.files[file]; dup {
			return nil, fmt.Errorf("zip member %q twice", name)
		}
		e.files[file] = f
	}
	if len(order) == 0 {
		return nil, fmt.Errorf("the zip holds no entry")
	}
	var out []*marEntry
	for _, id := range order {
		e := byUUID[id]
		mf := e.files["manifest.json"]
		if mf == nil {
			return nil, fmt.Errorf("entry %s has no manifest.json", id)
		}
		raw, err := readBounded(mf, maxManifest)
		if err != nil {
			return nil, fmt.Errorf("entry %s: manifest.json: %w", id, err)
		}
		if err := json.Unmarshal(raw, &e.manifest); err != nil {
			return nil, fmt.Errorf("entry %s: manifest.json: %w", id, err)
		}
		e.raw = raw
		if e.manifest.SchemaVersion != 1 {
			return nil, fmt.Errorf("entry %s: schema_version %d", id, e.manifest.SchemaVersion)
		}
		if e.manifest.Type == protocol.ManifestTypeCoredump {
			var md protocol.CoredumpPayload
			if err := e.manifest.DecodeMetadata(&md); err != nil {
				return nil, fmt.Errorf("entry %s: metadata: %w", id, err)
			}
			name := path.Base(md.CoredumpFileName)
			e.core = e.files[name]
			if e.core == nil {
				return nil, fmt.Errorf("entry %s: the core %q named by the manifest is not in the zip", id, md.CoredumpFileName)
			}
			switch md.Compression {
			case "", "none":
				e.compress = "none"
			case "gzip", "zstd":
				e.compress = md.Compression
			default:
				return nil, fmt.Errorf("entry %s: unknown compression %q", id, md.Compression)
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// readBounded reads a zip member that must not exceed max bytes, whatever its header says.
func readBounded(f *zip.File, max int64) ([]byte, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("over %d bytes", max)
	}
	return b, nil
}

// storeMember copies a zip member into the blob store; a member that inflates beyond its
// declared size (a zip bomb, or a lying header) is refused.
func (s *Server) storeMember(f *zip.File) (string, error) {
	rc, err := f.Open()
	if err != nil {
		return "", err
	}
	defer rc.Close()
	limit := int64(f.UncompressedSize64)
	hash, n, err := s.store.PutBlob(rc, limit)
	if err != nil {
		return "", fmt.Errorf("%s: %w", f.Name, err)
	}
	if n != limit {
		return "", fmt.Errorf("%s: %d bytes, header says %d", f.Name, n, limit)
	}
	return hash, nil
}

// commitMAR takes a PUT MAR zip: validate it whole, store each new entry (a uuid seen before
// is ignored), queue its core for analysis.
func (s *Server) commitMAR(w http.ResponseWriter, r *http.Request, body []byte) {
	u, ok := s.committedUpload(r.Context(), w, body, "mar")
	if !ok {
		return
	}
	f, err := s.store.OpenBlob(u.Blob)
	if err != nil {
		apiError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	defer f.Close()
	zr, err := zip.NewReader(f, u.Size)
	if err != nil {
		apiError(w, http.StatusBadRequest, "not a zip: %v", err)
		return
	}
	entries, err := s.readMAR(zr)
	if err != nil {
		apiError(w, http.StatusBadRequest, "MAR rejected: %v", err)
		return
	}
	// Every core is copied out before any row is written, so a bad member rejects the
	// upload with nothing stored half.
	blobs := map[string]string{}
	for _, e := range entries {
		if e.core == nil {
			continue
		}
		hash, err := s.storeMember(e.core)
		if err != nil {
			apiError(w, http.StatusBadRequest, "MAR rejected: entry %s: %v", e.uuid, err)
			return
		}
		blobs[e.uuid] = hash
	}
	// The upload is marked committed and its entries stored in one transaction: a commit
	// that fails part-way leaves the upload open for the device's retry.
	batch := make([]store.NewEntry, len(entries))
	for i, e := range entries {
		m := &e.manifest
		batch[i].Entry = store.Entry{UUID: e.uuid, Type: m.Type, DeviceSerial: m.Device.DeviceSerial, Manifest: string(e.raw)}
		if e.core != nil {
			captured, err := time.Parse(time.RFC3339, m.CollectionTime.Timestamp)
			if err != nil {
				captured = time.Now()
			}
			batch[i].Core = &store.CoreInput{
				Blob: blobs[e.uuid], Compression: e.compress,
				DeviceSerial: m.Device.DeviceSerial, HardwareVersion: m.Device.HardwareVersion,
				SoftwareType: m.Device.SoftwareType, SoftwareVersion: m.Device.SoftwareVersion,
				Captured: captured,
			}
		}
	}
	added, err := s.store.CommitEntries(r.Context(), u.Token, batch)
	if errors.Is(err, store.ErrCommitted) {
		apiError(w, http.StatusConflict, "upload already committed")
		return
	} else if err != nil {
		apiError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	stored, repeated := 0, 0
	for _, a := range added {
		if !a.Fresh {
			repeated++
			continue
		}
		stored++
		if a.CoreID != 0 {
			s.hooks.CoreStored(a.CoreID)
		}
	}
	s.log.Info("MAR committed", "entries", stored, "repeated", repeated)
	writeJSON(w, http.StatusAccepted, map[string]any{"data": map[string]any{"entries": stored, "repeated": repeated}})
}
