package upload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"sync"

	"github.com/hashicorp/go-retryablehttp"

	"meta-memfault-go/internal/device/staging"
	"meta-memfault-go/internal/protocol"
)

// Report says what UploadStaged did.
type Report struct {
	Uploaded int   // entries delivered (committed) and deleted
	Dropped  int   // entries deleted without upload: refused by keep, or with an unreadable manifest
	Zips     int   // zips committed
	Bytes    int64 // bytes of those zips
}

// UploadStaged sends every complete entry of dir whose manifest passes keep (nil keeps all),
// oldest first, in zips of at most maxZip bytes (see staging.Batches; an entry bigger than that
// goes alone and is logged as a warning). For each zip:
//
//	POST {base}/api/v0/upload {"content_encoding": null, "size": N, "device": {...}}
//	  -> {"data": {"upload_url", "token"}}
//	PUT upload_url, Content-Length N, the zip streamed from disk (re-created on retry)
//	POST {base}/api/v0/upload/mar {"file": {"token"}, "device_serial", "hardware_version",
//	  "software_type", "software_version"}
//
// The project key goes with every call to base_url; the PUT carries it only when upload_url has
// the same origin as base_url (Memfault's upload_url is a presigned storage URL on another host,
// which has no business seeing the key).
//
// Entries are deleted only after their commit succeeded, so delivery is at least once: an
// answer lost after the commit means the entries are sent again next time. Entries refused by
// keep, and entries whose manifest.json does not parse (they could never be sent), are deleted
// and counted as Dropped. Incomplete entries (no manifest.json) are never touched.
//
// The first failed request ends the call with its error (after the in-call retries); entries
// not yet committed stay for the next sync. A local problem with one zip (a file that vanished
// or cannot be read) skips that zip and is returned, joined, at the end.
func (c *Client) UploadStaged(ctx context.Context, dir staging.Dir, maxZip int64, keep func(*protocol.Manifest) bool) (Report, error) {
	var rep Report
	base, err := url.Parse(c.base)
	if err != nil {
		return rep, fmt.Errorf("base_url: %w", err)
	}
	list, err := dir.List()
	if err != nil {
		return rep, err
	}
	var local []error
	var send []staging.Info
	for _, e := range list {
		if !e.Complete {
			continue
		}
		m, err := e.ReadManifest()
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue // deleted meanwhile (by the cleaner)
		case errors.As(err, &syntax) || errors.As(err, &typ):
			c.log.Warn("dropping staged entry with a broken manifest", "uuid", e.UUID, "err", err)
			if err := os.RemoveAll(e.Path); err != nil {
				local = append(local, fmt.Errorf("drop entry %s: %w", e.UUID, err))
				continue
			}
			rep.Dropped++
			continue
		case err != nil:
			local = append(local, fmt.Errorf("entry %s: %w", e.UUID, err))
			continue
		}
		if keep != nil && !keep(m) {
			if err := os.RemoveAll(e.Path); err != nil {
				local = append(local, fmt.Errorf("drop entry %s: %w", e.UUID, err))
				continue
			}
			rep.Dropped++
			continue
		}
		send = append(send, e)
	}

	for _, batch := range staging.Batches(send, maxZip) {
		if err := ctx.Err(); err != nil {
			return rep, errors.Join(append([]error{err}, local...)...)
		}
		size, err := staging.ZipSize(batch)
		if err != nil {
			local = append(local, err)
			continue
		}
		if maxZip > 0 && size > maxZip {
			c.log.Warn("staged entry larger than the zip size limit, sent alone", "uuid", batch[0].UUID, "bytes", size, "limit", maxZip)
		}
		if err := c.sendZip(ctx, base, batch, size); err != nil {
			return rep, errors.Join(append([]error{err}, local...)...)
		}
		rep.Zips++
		rep.Bytes += size
		for _, e := range batch {
			rep.Uploaded++
			if err := os.RemoveAll(e.Path); err != nil {
				local = append(local, fmt.Errorf("delete uploaded entry %s (it will be sent again): %w", e.UUID, err))
			}
		}
		c.log.Debug("uploaded zip", "entries", len(batch), "bytes", size)
	}
	return rep, errors.Join(local...)
}

// sendZip prepares, PUTs and commits one zip.
func (c *Client) sendZip(ctx context.Context, base *url.URL, batch []staging.Info, size int64) error {
	raw, err := c.postJSON(ctx, "/api/v0/upload", struct {
		ContentEncoding *string    `json:"content_encoding"`
		Size            int64      `json:"size"`
		Device          deviceJSON `json:"device"`
	}{nil, size, c.device})
	if err != nil {
		return err
	}
	var prep struct {
		Data struct {
			UploadURL string `json:"upload_url"`
			Token     string `json:"token"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &prep); err != nil {
		return fmt.Errorf("prepare upload: answer: %w", err)
	}
	if prep.Data.Token == "" || prep.Data.UploadURL == "" {
		return fmt.Errorf("prepare upload: answer without upload_url or token")
	}
	target, err := url.Parse(prep.Data.UploadURL)
	if err != nil || (target.Scheme != "https" && target.Scheme != "http") || target.Host == "" {
		return fmt.Errorf("prepare upload: bad upload_url")
	}

	if err := c.put(ctx, base, target, batch, size); err != nil {
		return err
	}

	type file struct {
		Token string `json:"token"`
	}
	_, err = c.postJSON(ctx, "/api/v0/upload/mar", struct {
		File file `json:"file"`
		deviceJSON
	}{file{prep.Data.Token}, c.device})
	return err
}

// put streams the zip of batch to target.
func (c *Client) put(ctx context.Context, base, target *url.URL, batch []staging.Info, size int64) error {
	body := retryablehttp.ReaderFunc(func() (io.Reader, error) { return &zipBody{entries: batch}, nil })
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPut, target.String(), body)
	if err != nil {
		return err
	}
	req.ContentLength = size
	if sameOrigin(base, target) {
		req.Header.Set(HeaderProjectKey, c.key)
	}
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
	return resp.Body.Close()
}

// zipBody is one attempt's request body: the zip, written by staging.WriteZip into a pipe from
// the first Read on. Close stops the writer and waits for it, so no file stays open after the
// request is done.
type zipBody struct {
	entries []staging.Info

	mu     sync.Mutex
	pr     *io.PipeReader
	done   chan struct{}
	closed bool
}

func (b *zipBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return 0, io.ErrClosedPipe
	}
	if b.pr == nil {
		pr, pw := io.Pipe()
		b.pr, b.done = pr, make(chan struct{})
		go func() {
			defer close(b.done)
			_, err := staging.WriteZip(pw, b.entries)
			pw.CloseWithError(err) // nil: EOF for the reader
		}()
	}
	pr := b.pr
	b.mu.Unlock()
	return pr.Read(p)
}

func (b *zipBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.pr != nil {
		b.pr.Close()
		<-b.done
	}
	return nil
}
