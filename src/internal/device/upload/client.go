// Package upload talks to Memfault's device API: it delivers staged MAR entries (prepare, PUT,
// commit) and fetches the device config. Retries inside one call cover short outages; the long
// back-off between syncs belongs to the caller (see Backoff).
package upload

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"meta-memfault-go/internal/device/config"
	"meta-memfault-go/internal/protocol"
	"meta-memfault-go/internal/version"
)

// HeaderProjectKey carries the project key on every call to base_url.
const HeaderProjectKey = "Memfault-Project-Key"

const (
	defaultRetryMax  = 2
	defaultRetryWait = time.Second
	maxResponse      = 1 << 20 // bytes of a JSON answer read
	maxErrorExcerpt  = 256     // bytes of an error answer quoted in the error
)

// Options configure a Client.
type Options struct {
	BaseURL    string // config base_url
	ProjectKey string
	Device     config.DeviceInfo
	HTTPClient *http.Client // nil: a default with sane timeouts (connect 10 s, response headers 1 min)
	Logger     *slog.Logger // nil: discard
	// RetryMax is how often one request is retried inside a call after a transport error or a
	// 5xx answer (0: 2; negative: never). The long back-off between syncs is the caller's.
	RetryMax int
	// RetryWait is the wait before the first retry inside a call (0: 1 s); it doubles, up to 4x.
	RetryWait time.Duration
}

// Client calls the device API. It is safe for concurrent use.
type Client struct {
	base   string // without trailing slash
	key    string
	device deviceJSON
	http   *retryablehttp.Client
	log    *slog.Logger
}

// deviceJSON is the device object of requests.
type deviceJSON struct {
	DeviceSerial    string `json:"device_serial"`
	HardwareVersion string `json:"hardware_version"`
	SoftwareType    string `json:"software_type"`
	SoftwareVersion string `json:"software_version"`
}

// New returns a client for o.
func New(o Options) *Client {
	hc := o.HTTPClient
	if hc == nil {
		hc = defaultHTTPClient()
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	retries := o.RetryMax
	switch {
	case retries == 0:
		retries = defaultRetryMax
	case retries < 0:
		retries = 0
	}
	wait := o.RetryWait
	if wait <= 0 {
		wait = defaultRetryWait
	}
	return &Client{
		base: strings.TrimRight(o.BaseURL, "/"),
		key:  o.ProjectKey,
		device: deviceJSON{
			DeviceSerial:    o.Device.DeviceID,
			HardwareVersion: o.Device.HardwareVersion,
			SoftwareType:    o.Device.SoftwareType,
			SoftwareVersion: o.Device.SoftwareVersion,
		},
		http: &retryablehttp.Client{
			HTTPClient:   hc,
			Logger:       debugLogger{log},
			RetryWaitMin: wait,
			RetryWaitMax: 4 * wait,
			RetryMax:     retries,
			CheckRetry:   checkRetry,
			// Exponential, ignoring Retry-After: a long wait is the caller's decision.
			Backoff: func(min, max time.Duration, n int, _ *http.Response) time.Duration {
				return retryablehttp.DefaultBackoff(min, max, n, nil)
			},
			// Hand back the last answer so its status and body make the error.
			ErrorHandler: retryablehttp.PassthroughErrorHandler,
		},
		log: log,
	}
}

func defaultHTTPClient() *http.Client {
	// No whole-request timeout: a 10 MiB zip over a slow cellular link takes minutes. The
	// caller's context bounds each sync; connecting and waiting for response headers are
	// bounded here.
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: time.Minute,
			ExpectContinueTimeout: time.Second,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          2,
			IdleConnTimeout:       90 * time.Second,
		},
	}
}

// checkRetry retries transport errors (except the ones retrying cannot fix) and 5xx answers,
// never once ctx has ended.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
	}
	return resp.StatusCode >= 500, nil
}

// debugLogger turns the retry library's messages into debug records: failures reach the caller
// as errors and are logged there, once.
type debugLogger struct{ l *slog.Logger }

func (d debugLogger) Error(msg string, kv ...any) { d.l.Debug(msg, kv...) }
func (d debugLogger) Info(msg string, kv ...any)  { d.l.Debug(msg, kv...) }
func (d debugLogger) Debug(msg string, kv ...any) { d.l.Debug(msg, kv...) }
func (d debugLogger) Warn(msg string, kv ...any)  { d.l.Debug(msg, kv...) }

// HTTPError is a non-2xx answer.
type HTTPError struct {
	Method     string
	URL        string // without query
	StatusCode int
	Status     string // e.g. "500 Internal Server Error"
	Body       string // bounded, printable excerpt of the answer
}

func (e *HTTPError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("%s %s: %s", e.Method, e.URL, e.Status)
	}
	return fmt.Sprintf("%s %s: %s: %s", e.Method, e.URL, e.Status, e.Body)
}

// redact drops the query (a presigned URL's signature) and user info.
func redact(u *url.URL) string {
	c := *u
	c.RawQuery, c.User, c.Fragment = "", nil, ""
	return c.String()
}

// excerpt returns up to maxErrorExcerpt bytes of r as one printable line.
func excerpt(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, maxErrorExcerpt+1))
	cut := len(b) > maxErrorExcerpt
	if cut {
		b = b[:maxErrorExcerpt]
	}
	return protocol.PrintableLine(b, cut)
}

// do sends req with retries. A 2xx answer is returned open; anything else is an error (an
// *HTTPError for a non-2xx answer).
func (c *Client) do(req *retryablehttp.Request) (*http.Response, error) {
	req.Header.Set("User-Agent", "meta-memfault-go/"+version.Version)
	resp, err := c.http.Do(req)
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return nil, fmt.Errorf("%s %s: %w", req.Method, redact(req.URL), err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, &HTTPError{
			Method: req.Method, URL: redact(req.URL),
			StatusCode: resp.StatusCode, Status: resp.Status, Body: excerpt(resp.Body),
		}
	}
	return resp, nil
}

// postJSON POSTs in to base_url+path and returns the (bounded) answer.
func (c *Client) postJSON(ctx context.Context, path string, in any) ([]byte, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, c.base+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set(HeaderProjectKey, c.key)
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("POST %s: read answer: %w", redact(req.URL), err)
	}
	if len(out) > maxResponse {
		return nil, fmt.Errorf("POST %s: answer larger than %d bytes", redact(req.URL), maxResponse)
	}
	return out, nil
}

// sameOrigin reports whether a and b have the same scheme, host and port.
func sameOrigin(a, b *url.URL) bool {
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		switch strings.ToLower(u.Scheme) {
		case "https":
			return "443"
		case "http":
			return "80"
		}
		return ""
	}
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Hostname(), b.Hostname()) && port(a) == port(b)
}
