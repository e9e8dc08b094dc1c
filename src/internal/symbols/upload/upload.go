// Package upload sends symbol files to a symbols API: memfault-server's or Memfault's cloud.
// One file is three requests: prepare (POST .../upload {"size"}), PUT of the bytes to the
// upload URL it answers, commit (POST .../symbols {"file": {"token", "name"}}). Before
// sending, the client asks which build-ids the server already has (POST .../symbols/present,
// memfault-server's; Memfault's cloud answers 404 and then every file is sent). Every request
// is retried after transport errors and 5xx answers, with back-off; file bodies are streamed
// from disk, never read whole.
package upload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"meta-memfault-go/internal/protocol"
	"meta-memfault-go/internal/symbols/debugpkg"
	"meta-memfault-go/internal/version"
)

const (
	defaultConcurrency = 8
	defaultRetryMax    = 4
	defaultRetryWait   = time.Second
	maxRetryWait       = 30 * time.Second
	maxResponse        = 1 << 20 // bytes of a JSON answer read
	maxErrorExcerpt    = 256     // bytes of an error answer quoted in an error
	// presentBatch is how many build-ids one present check carries: memfault-server reads at
	// most 1 MiB of JSON, and a build-id is at most 128 hex digits.
	presentBatch = 4096
)

// ErrNoPresentCheck is returned by Present when the server has no present check (Memfault's
// cloud answers 404): every file has to be sent.
var ErrNoPresentCheck = errors.New("the server has no symbols/present check")

// errPresent is Upload's answer when the commit says the server already has the file.
var errPresent = errors.New("already on the server")

// Config says where to upload and how.
type Config struct {
	BaseURL  string // e.g. https://api.memfault.com (no trailing path)
	Org      string // organization slug
	Project  string // project slug
	OrgToken string // organization auth token, sent as the password of basic auth
	// Email and Password authenticate when OrgToken is empty (Memfault's --email/--password:
	// an account and its password or user API key; an org token as Password with no Email).
	Email, Password string
	Concurrency     int          // files in flight at once (0: 8)
	HTTP            *http.Client // nil: one with connect and response-header timeouts
	Progress        Progress     // nil: nothing shown
	// RetryMax is how often one request is retried after a transport error or a 5xx answer
	// (0: 4; negative: never). RetryWait is the first wait (0: 1 s); it doubles up to 30 s.
	RetryMax  int
	RetryWait time.Duration
}

// Client talks to one project's symbols API. It is safe for concurrent use.
type Client struct {
	cfg     Config
	base    *url.URL
	project string // base path of the project's API
	http    *retryablehttp.Client
	prog    Progress
}

// New checks cfg and returns a client.
func New(cfg Config) (*Client, error) {
	base, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("url %q: want http(s)://host[:port]", Redact(cfg.BaseURL))
	}
	if cfg.Org == "" || cfg.Project == "" {
		return nil, errors.New("organization and project slugs are required")
	}
	if cfg.OrgToken == "" && cfg.Password == "" {
		return nil, errors.New("an organization auth token (or a password) is required")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = defaultConcurrency
	}
	retries := cfg.RetryMax
	switch {
	case retries == 0:
		retries = defaultRetryMax
	case retries < 0:
		retries = 0
	}
	wait := cfg.RetryWait
	if wait <= 0 {
		wait = defaultRetryWait
	}
	hc := cfg.HTTP
	if hc == nil {
		hc = defaultHTTPClient(cfg.Concurrency)
	}
	prog := cfg.Progress
	if prog == nil {
		prog = nopProgress{}
	}
	return &Client{
		cfg:     cfg,
		base:    base,
		project: "/api/v0/organizations/" + url.PathEscape(cfg.Org) + "/projects/" + url.PathEscape(cfg.Project),
		http: &retryablehttp.Client{
			HTTPClient:   hc,
			Logger:       nil, // failures reach the caller as errors; the library's lines add nothing
			RetryWaitMin: wait,
			RetryWaitMax: max(wait, maxRetryWait),
			RetryMax:     retries,
			CheckRetry:   checkRetry,
			Backoff:      backoff,
			ErrorHandler: retryablehttp.PassthroughErrorHandler,
		},
		prog: prog,
	}, nil
}

func defaultHTTPClient(conns int) *http.Client {
	// No whole-request timeout: a 500 MB debug file over a slow CI uplink takes minutes. The
	// caller's context bounds the run; connecting and waiting for an answer are bounded here.
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   30 * time.Second,
			ResponseHeaderTimeout: 5 * time.Minute, // the commit of a large file is checked before the answer
			ExpectContinueTimeout: time.Second,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          2 * conns,
			MaxIdleConnsPerHost:   conns,
			IdleConnTimeout:       90 * time.Second,
		},
	}
}

// backoff doubles the wait from RetryWaitMin and honours a Retry-After of a 429 or 503
// answer, never beyond maxRetryWait (a hostile answer does not park the run).
func backoff(min, max time.Duration, n int, resp *http.Response) time.Duration {
	return time.Duration(math.Min(float64(retryablehttp.DefaultBackoff(min, max, n, resp)), float64(maxRetryWait)))
}

// checkRetry retries transport errors (except the ones retrying cannot fix), 5xx and 429
// answers, never once ctx has ended.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
	}
	return resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests, nil
}

// HTTPError is a non-2xx answer.
type HTTPError struct {
	Method     string
	URL        string // without query or user info
	StatusCode int
	Status     string // "500 Internal Server Error"
	Body       string // bounded, printable excerpt of the answer
}

func (e *HTTPError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("%s %s: %s", e.Method, e.URL, e.Status)
	}
	return fmt.Sprintf("%s %s: %s: %s", e.Method, e.URL, e.Status, e.Body)
}

// Redact returns rawURL without user info, query and fragment (a presigned URL's signature, a
// password someone put in --url).
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable URL)"
	}
	c := *u
	c.RawQuery, c.User, c.Fragment, c.ForceQuery = "", nil, "", false
	return c.String()
}

// excerpt returns up to maxErrorExcerpt bytes of r as one printable line; for a JSON error
// body shaped like Memfault's ({"error": {"message"}}) the message alone.
func excerpt(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, maxErrorExcerpt+1))
	cut := len(b) > maxErrorExcerpt
	if cut {
		b = b[:maxErrorExcerpt]
	} else {
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
			b, cut = []byte(e.Error.Message), false
		}
	}
	return protocol.PrintableLine(b, cut)
}

func (c *Client) setAuth(req *retryablehttp.Request) {
	if c.cfg.OrgToken != "" {
		req.SetBasicAuth("", c.cfg.OrgToken)
	} else {
		req.SetBasicAuth(c.cfg.Email, c.cfg.Password)
	}
}

// do sends req with retries. A 2xx answer is returned open; anything else is an error (an
// *HTTPError for a non-2xx answer).
func (c *Client) do(req *retryablehttp.Request) (*http.Response, error) {
	req.Header.Set("User-Agent", "meta-memfault-go-cli/"+version.Version)
	resp, err := c.http.Do(req)
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		// The transport's errors quote the URL; ours has no secret in it, but a presigned
		// upload URL's query is a credential.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%s %s: %w", req.Method, Redact(req.URL.String()), err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, &HTTPError{
			Method: req.Method, URL: Redact(req.URL.String()),
			StatusCode: resp.StatusCode, Status: resp.Status, Body: excerpt(resp.Body),
		}
	}
	return resp, nil
}

// postJSON POSTs in to the project's API path and decodes the (bounded) answer into out
// (nil: answer discarded). attempts, when not nil, counts the attempts made.
func (c *Client) postJSON(ctx context.Context, path string, in, out any, attempts *int32) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	rf := retryablehttp.ReaderFunc(func() (io.Reader, error) {
		if attempts != nil {
			atomic.AddInt32(attempts, 1)
		}
		return strings.NewReader(string(body)), nil
	})
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, c.base.String()+c.project+path, rf)
	if err != nil {
		return err
	}
	if attempts != nil {
		atomic.StoreInt32(attempts, 0) // the body factory ran once to measure the body
	}
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	c.setAuth(req)
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return fmt.Errorf("POST %s: read answer: %w", Redact(req.URL.String()), err)
	}
	if len(raw) > maxResponse {
		return fmt.Errorf("POST %s: answer larger than %d bytes", Redact(req.URL.String()), maxResponse)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("POST %s: answer is not the expected JSON: %w", Redact(req.URL.String()), err)
	}
	return nil
}

// Present asks the server which of buildIDs it already has. On a server without the check
// (404, Memfault's cloud) it returns ErrNoPresentCheck: every file is to be sent.
func (c *Client) Present(ctx context.Context, buildIDs []string) (map[string]bool, error) {
	have := make(map[string]bool, len(buildIDs))
	for len(buildIDs) > 0 {
		batch := buildIDs[:min(len(buildIDs), presentBatch)]
		buildIDs = buildIDs[len(batch):]
		var ans struct {
			Data *struct {
				Present []string `json:"present"`
			} `json:"data"`
		}
		err := c.postJSON(ctx, "/symbols/present", map[string]any{"build_ids": batch}, &ans, nil)
		var he *HTTPError
		if errors.As(err, &he) && he.StatusCode == http.StatusNotFound {
			return nil, ErrNoPresentCheck
		}
		if err != nil {
			return nil, fmt.Errorf("present check: %w", err)
		}
		if ans.Data == nil {
			return nil, errors.New(`present check: answer without "data"`)
		}
		asked := make(map[string]bool, len(batch))
		for _, id := range batch {
			asked[strings.ToLower(id)] = true
		}
		for _, id := range ans.Data.Present {
			if id = strings.ToLower(id); asked[id] {
				have[id] = true
			}
		}
	}
	return have, nil
}

// Upload sends one symbol file: prepare, PUT (streamed from s.File), commit.
func (c *Client) Upload(ctx context.Context, s debugpkg.Symbol) error {
	_, err := c.upload(ctx, s)
	if errors.Is(err, errPresent) {
		return nil
	}
	return err
}

// step names where an upload failed.
type stepError struct {
	step string // prepare, put, commit
	err  error
}

func (e *stepError) Error() string { return e.step + ": " + e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

// upload returns the bytes PUT; errPresent when the commit says the server has the file.
func (c *Client) upload(ctx context.Context, s debugpkg.Symbol) (int64, error) {
	f, err := os.Open(s.File)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if !st.Mode().IsRegular() {
		return 0, fmt.Errorf("%s: not a regular file", s.File)
	}
	size := st.Size()
	if size == 0 {
		return 0, fmt.Errorf("%s: empty file", s.File)
	}

	var prep struct {
		Data *struct {
			UploadURL string `json:"upload_url"`
			Token     string `json:"token"`
		} `json:"data"`
	}
	if err := c.postJSON(ctx, "/upload", map[string]any{"size": size}, &prep, nil); err != nil {
		return 0, &stepError{"prepare", err}
	}
	if prep.Data == nil || prep.Data.Token == "" || prep.Data.UploadURL == "" {
		return 0, &stepError{"prepare", errors.New("answer without data.upload_url and data.token")}
	}
	target, err := url.Parse(prep.Data.UploadURL)
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		return 0, &stepError{"prepare", fmt.Errorf("upload_url %q is not an http(s) URL", Redact(prep.Data.UploadURL))}
	}

	if err := c.put(ctx, target, f, size); err != nil {
		return 0, &stepError{"put", err}
	}

	var attempts int32
	name := s.Path
	if name == "" {
		name = "build-id " + s.BuildID
	}
	err = c.postJSON(ctx, "/symbols", map[string]any{"file": map[string]any{"token": prep.Data.Token, "name": name}}, nil, &attempts)
	var he *HTTPError
	if errors.As(err, &he) && he.StatusCode == http.StatusConflict {
		if atomic.LoadInt32(&attempts) > 1 {
			// An earlier attempt of this commit went through; its answer was lost.
			return size, nil
		}
		return size, errPresent
	}
	if err != nil {
		return size, &stepError{"commit", err}
	}
	return size, nil
}

// put streams size bytes of f to target. The upload URL carries its own credential (memfault-
// server's token path, a presigned storage URL): no Authorization header goes with it.
func (c *Client) put(ctx context.Context, target *url.URL, f *os.File, size int64) error {
	var sent atomic.Int64 // bytes of the current attempt counted in the progress
	rf := retryablehttp.ReaderFunc(func() (io.Reader, error) {
		if n := sent.Swap(0); n != 0 {
			c.prog.Sent(-n) // a retry: the last attempt's bytes did not count
		}
		return &countingReader{r: io.NewSectionReader(f, 0, size), n: size, prog: c.prog, sent: &sent}, nil
	})
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPut, target.String(), rf)
	if err != nil {
		return err
	}
	req.ContentLength = size
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
	return resp.Body.Close()
}

// countingReader reports the bytes read to the progress. Len lets the retry library size the
// request.
type countingReader struct {
	r    io.Reader
	n    int64 // bytes left
	prog Progress
	sent *atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.n -= int64(n)
		r.sent.Add(int64(n))
		r.prog.Sent(int64(n))
	}
	return n, err
}

func (r *countingReader) Len() int { return int(r.n) }

// Status is what became of one symbol file.
type Status string

const (
	Uploaded Status = "uploaded" // sent in this run
	Present  Status = "present"  // the server already had its build-id
	Failed   Status = "failed"   // sending failed for good
	NotSent  Status = "not sent" // the run stopped before it was tried (see Summary.Err)
)

// FileResult is the outcome for one symbol file.
type FileResult struct {
	Symbol debugpkg.Symbol
	Status Status
	Err    error // Failed: why
	Bytes  int64 // bytes PUT
}

// Summary is the outcome of UploadAll.
type Summary struct {
	Files    []FileResult     // one per distinct build-id, in the order given
	Uploaded []string         // build-ids sent
	Present  []string         // build-ids the server already had
	Failed   map[string]error // build-id (path for a file without one) -> why it could not be sent
	NotSent  []string         // build-ids not tried because the run stopped (Err)
	Bytes    int64            // bytes PUT
	// PresentChecked is false when the server has no present check (Memfault's cloud): every
	// file was sent.
	PresentChecked bool
	// Err stops the whole run: credentials rejected, unknown project, present check failed,
	// context ended.
	Err error
}

// OK reports whether every file is on the server.
func (s *Summary) OK() bool { return s.Err == nil && len(s.Failed) == 0 && len(s.NotSent) == 0 }

// fatal says whether err stops every other upload too: the server refuses the credentials or
// does not know the project (a 404 from prepare, which every server has).
func fatal(err error) bool {
	var he *HTTPError
	var se *stepError
	if !errors.As(err, &se) || se.step != "prepare" || !errors.As(err, &he) {
		return false
	}
	return he.StatusCode == http.StatusUnauthorized || he.StatusCode == http.StatusForbidden || he.StatusCode == http.StatusNotFound
}

// UploadAll asks the server which build-ids it has, then sends the rest of syms, Concurrency
// files at a time. Symbols sharing a build-id are sent once.
func (c *Client) UploadAll(ctx context.Context, syms []debugpkg.Symbol) *Summary {
	ids := make([]string, 0, len(syms))
	for _, s := range syms {
		if s.BuildID != "" {
			ids = append(ids, strings.ToLower(s.BuildID))
		}
	}
	have, err := c.Present(ctx, ids)
	switch {
	case errors.Is(err, ErrNoPresentCheck):
		c.prog.Note("the server has no present check (Memfault's cloud has none): sending every file")
	case err != nil:
		sum := &Summary{Failed: map[string]error{}}
		for _, s := range syms {
			sum.Files = append(sum.Files, FileResult{Symbol: s, Status: NotSent})
			sum.NotSent = append(sum.NotSent, s.BuildID)
		}
		sum.Err = err
		return sum
	}
	return c.UploadMissing(ctx, syms, have)
}

// UploadMissing sends the symbols of syms whose build-id is not in have (the answer of
// Present; nil: the server was not asked and every file is sent), Concurrency files at a time.
// Symbols sharing a build-id are sent once.
func (c *Client) UploadMissing(ctx context.Context, syms []debugpkg.Symbol, have map[string]bool) *Summary {
	sum := &Summary{Failed: map[string]error{}, PresentChecked: have != nil}
	index := map[string]int{}
	var ids []string
	for _, s := range syms {
		id := strings.ToLower(s.BuildID)
		if id == "" {
			sum.Files = append(sum.Files, FileResult{Symbol: s, Status: Failed, Err: errors.New("no GNU build-id: the server matches symbols by build-id")})
			continue
		}
		if _, dup := index[id]; dup {
			continue
		}
		s.BuildID = id
		index[id] = len(sum.Files)
		ids = append(ids, id)
		sum.Files = append(sum.Files, FileResult{Symbol: s, Status: NotSent})
	}
	if len(syms) == 0 {
		return sum
	}

	var todo []int
	var total int64
	for _, id := range ids {
		i := index[id]
		if have[id] {
			sum.Files[i].Status = Present
			continue
		}
		todo = append(todo, i)
		total += sum.Files[i].Symbol.Size
	}

	c.prog.Start(len(todo), total)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		mu       sync.Mutex
		stopErr  error
		jobs     = make(chan int)
		wg       sync.WaitGroup
		nWorkers = min(c.cfg.Concurrency, len(todo))
	)
	for w := 0; w < nWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if runCtx.Err() != nil {
					continue // stays NotSent
				}
				r := &sum.Files[i]
				n, err := c.upload(runCtx, r.Symbol)
				mu.Lock()
				r.Bytes = n
				switch {
				case errors.Is(err, errPresent):
					r.Status = Present
				case err != nil && runCtx.Err() != nil && (stopErr != nil || ctx.Err() != nil):
					// Cut short by another file's fatal error or by the caller: not this
					// file's fault.
					r.Bytes = 0
				case err != nil:
					r.Status, r.Err = Failed, err
					if fatal(err) && stopErr == nil {
						stopErr = err
						stop()
					}
				default:
					r.Status = Uploaded
				}
				res := *r
				mu.Unlock()
				c.prog.Done(res)
			}
		}()
	}
	for _, i := range todo {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	c.prog.Finish()

	for _, r := range sum.Files {
		switch r.Status {
		case Uploaded:
			sum.Uploaded = append(sum.Uploaded, r.Symbol.BuildID)
			sum.Bytes += r.Bytes
		case Present:
			sum.Present = append(sum.Present, r.Symbol.BuildID)
		case Failed:
			key := r.Symbol.BuildID
			if key == "" {
				key = r.Symbol.Path
			}
			sum.Failed[key] = r.Err
		case NotSent:
			sum.NotSent = append(sum.NotSent, r.Symbol.BuildID)
		}
	}
	switch {
	case stopErr != nil:
		sum.Err = fmt.Errorf("stopped: %w", stopErr)
	case ctx.Err() != nil && len(sum.NotSent) > 0:
		sum.Err = fmt.Errorf("stopped: %w", ctx.Err())
	}
	return sum
}
