// Package notify sends webhooks for issue events: a new issue, and an issue seen again in a
// newer software version than any it was seen in before (a regression, decided by
// group.Newer when the analysis is stored). Events come from the store's outbox (they are
// written in the transaction that stores the analysis); each becomes one delivery per
// configured URL, sent from a goroutine of its own with retries and back-off, so a slow or
// broken receiver never holds up ingestion or analysis, and a restart loses nothing.
//
// Delivery is at least once: a delivery is marked delivered after the receiver answered 2xx.
// Only a server killed between the receiver's answer and that update sends it again, with the
// same X-Memfault-Delivery id, by which a receiver can drop the repeat.
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"meta-memfault-go/internal/server/store"
)

// Hook is one webhook receiver.
type Hook struct {
	URL string `json:"url"`
	// Secret, when set, signs each body: X-Memfault-Signature-256: sha256=<hex HMAC-SHA256>.
	Secret string `json:"secret,omitempty"`
}

// Config says where and how to send.
type Config struct {
	Hooks []Hook
	// PublicURL is the server's address as people reach it; issue pages are
	// PublicURL/issues/<id>.
	PublicURL string
	// Timeout bounds one HTTP request (default 10 s).
	Timeout time.Duration
	// RetryMax is how many times one round retries after the first try (default 3), waiting
	// RetryWaitMin doubling up to RetryWaitMax (defaults 1 s, 30 s).
	RetryMax                   int
	RetryWaitMin, RetryWaitMax time.Duration
	// Rounds is how many rounds a delivery gets before it is marked failed (default 8); round
	// k+1 starts RoundWait·2^(k-1) after round k failed (default 30 s: about two hours in all).
	Rounds    int
	RoundWait time.Duration
	// Parallel is how many deliveries are sent at once (default 4).
	Parallel int
}

func (c *Config) defaults() {
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.RetryMax < 0 {
		c.RetryMax = 0
	} else if c.RetryMax == 0 {
		c.RetryMax = 3
	}
	if c.RetryWaitMin <= 0 {
		c.RetryWaitMin = time.Second
	}
	if c.RetryWaitMax < c.RetryWaitMin {
		c.RetryWaitMax = max(30*time.Second, c.RetryWaitMin)
	}
	if c.Rounds <= 0 {
		c.Rounds = 8
	}
	if c.RoundWait <= 0 {
		c.RoundWait = 30 * time.Second
	}
	if c.Parallel <= 0 {
		c.Parallel = 4
	}
	c.PublicURL = strings.TrimSuffix(c.PublicURL, "/")
}

// ParseHooks reads a webhook configuration file: {"webhooks": [{"url": "...", "secret": "..."}]}.
func ParseHooks(b []byte) ([]Hook, error) {
	var f struct {
		Webhooks []Hook `json:"webhooks"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	for i, h := range f.Webhooks {
		if err := CheckURL(h.URL); err != nil {
			return nil, fmt.Errorf("webhooks[%d]: %w", i, err)
		}
	}
	return f.Webhooks, nil
}

// CheckURL accepts http and https URLs with a host.
func CheckURL(u string) error {
	req, err := http.NewRequest(http.MethodPost, u, nil)
	if err != nil {
		return fmt.Errorf("url %q: %w", u, err)
	}
	if (req.URL.Scheme != "http" && req.URL.Scheme != "https") || req.URL.Host == "" {
		return fmt.Errorf("url %q: want http://host/... or https://host/...", u)
	}
	return nil
}

// Payload is the JSON body of every call.
type Payload struct {
	Event            string    `json:"event"` // issue.new or issue.regression
	EventID          int64     `json:"event_id"`
	IssueID          int64     `json:"issue_id"`
	Title            string    `json:"title"`
	Fingerprint      string    `json:"fingerprint"`
	Signal           string    `json:"signal"`
	Function         string    `json:"function"`           // the crashing function (first fingerprint frame)
	Location         string    `json:"location,omitempty"` // its file:line
	SoftwareType     string    `json:"software_type"`
	SoftwareVersion  string    `json:"software_version"`            // of the core that caused the event
	PreviousVersions []string  `json:"previous_versions,omitempty"` // regression: the versions seen before
	DeviceSerial     string    `json:"device_serial"`
	CoreID           int64     `json:"core_id"`
	FirstSeen        time.Time `json:"first_seen"`
	LastSeen         time.Time `json:"last_seen"`
	URL              string    `json:"url"` // the issue's page
	Created          time.Time `json:"created"`
}

// Notifier moves events from the outbox to the receivers.
type Notifier struct {
	cfg   Config
	st    *store.Store
	log   *slog.Logger
	hooks map[string]Hook
	urls  []string
	wake  chan struct{}
	http  *http.Client
}

// New makes a notifier; with no hooks it still marks events as handled.
func New(cfg Config, st *store.Store, log *slog.Logger) *Notifier {
	cfg.defaults()
	n := &Notifier{cfg: cfg, st: st, log: log, hooks: map[string]Hook{}, wake: make(chan struct{}, 1),
		http: &http.Client{Timeout: cfg.Timeout}}
	for _, h := range cfg.Hooks {
		if _, dup := n.hooks[h.URL]; !dup {
			n.urls = append(n.urls, h.URL)
		}
		n.hooks[h.URL] = h
	}
	return n
}

// Wake says that new events may be in the outbox (the worker calls it after each analysis).
func (n *Notifier) Wake() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *Notifier) body(e store.IssueEvent, _ string) ([]byte, error) {
	return json.Marshal(Payload{Event: e.Kind, EventID: e.ID, IssueID: e.IssueID, Title: e.Title, Fingerprint: e.Fingerprint,
		Signal: e.Signal, Function: e.Function, Location: e.Location, SoftwareType: e.SoftwareType,
		SoftwareVersion: e.SoftwareVersion, PreviousVersions: e.PreviousVersions, DeviceSerial: e.DeviceSerial, CoreID: e.CoreID,
		FirstSeen: e.FirstSeen.UTC(), LastSeen: e.LastSeen.UTC(), URL: fmt.Sprintf("%s/issues/%d", n.cfg.PublicURL, e.IssueID),
		Created: e.Created.UTC()})
}

type result struct {
	id       int64
	attempts int
	err      error
}

// Run sends until ctx ends, then gives the calls in flight a few seconds to finish (a call cut
// off is tried again after the next start).
func (n *Notifier) Run(ctx context.Context) {
	sendCtx, cancelSends := context.WithCancel(context.Background())
	defer cancelSends()
	inflight := map[int64]bool{}
	results := make(chan result)
	finish := func(r result) {
		delete(inflight, r.id)
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		if _, err := n.st.FanOut(context.Background(), n.urls, n.body); err != nil {
			n.log.Error("webhook outbox", "err", err)
		}
		if free := n.cfg.Parallel - len(inflight); free > 0 && len(n.urls) > 0 {
			due, err := n.st.DueDeliveries(context.Background(), time.Now(), free, inflight)
			if err != nil {
				n.log.Error("webhook outbox", "err", err)
			}
			for _, d := range due {
				inflight[d.ID] = true
				go func(d store.Delivery) { results <- n.send(sendCtx, d) }(d)
			}
		}
		wait := time.Second
		if next, ok, err := n.st.NextDeliveryDue(context.Background()); err == nil && ok {
			wait = min(wait, max(0, time.Until(next)))
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			grace := time.AfterFunc(5*time.Second, cancelSends)
			for len(inflight) > 0 {
				finish(<-results)
			}
			grace.Stop()
			return
		case r := <-results:
			finish(r)
		case <-n.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// send makes one round of calls for a delivery and records the outcome.
func (n *Notifier) send(ctx context.Context, d store.Delivery) result {
	res := result{id: d.ID}
	hook, ok := n.hooks[d.URL]
	bg := context.Background()
	if !ok {
		res.err = errors.New("the URL is no longer configured")
		n.record(bg, d, res, true)
		return res
	}
	c := retryablehttp.NewClient()
	c.HTTPClient = n.http
	c.Logger = nil
	c.RetryMax, c.RetryWaitMin, c.RetryWaitMax = n.cfg.RetryMax, n.cfg.RetryWaitMin, n.cfg.RetryWaitMax
	c.ErrorHandler = retryablehttp.PassthroughErrorHandler
	c.RequestLogHook = func(_ retryablehttp.Logger, _ *http.Request, attempt int) { res.attempts = attempt + 1 }
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, d.URL, d.Body)
	if err != nil {
		res.err = err
		n.record(bg, d, res, true)
		return res
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "memfault-server")
	req.Header.Set("X-Memfault-Event", d.Kind)
	req.Header.Set("X-Memfault-Delivery", fmt.Sprint(d.ID))
	if hook.Secret != "" {
		req.Header.Set("X-Memfault-Signature-256", Sign(hook.Secret, d.Body))
	}
	resp, err := c.Do(req)
	if resp != nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if err == nil && (resp.StatusCode < 200 || resp.StatusCode > 299) {
			err = fmt.Errorf("receiver answered %s", resp.Status)
		}
	}
	res.err = err
	n.record(bg, d, res, false)
	return res
}

func (n *Notifier) record(ctx context.Context, d store.Delivery, r result, giveUp bool) {
	if r.attempts == 0 {
		r.attempts = 1
	}
	if r.err == nil {
		if err := n.st.DeliveryDone(ctx, d.ID, r.attempts); err != nil {
			n.log.Error("webhook delivered, recording it failed", "delivery", d.ID, "err", err)
			return
		}
		n.log.Info("webhook delivered", "delivery", d.ID, "event", d.Kind, "url", d.URL, "attempts", d.Attempts+r.attempts)
		return
	}
	round := (d.Attempts + r.attempts + n.cfg.RetryMax) / (n.cfg.RetryMax + 1) // rounds so far, this one included
	giveUp = giveUp || round >= n.cfg.Rounds
	next := time.Now().Add(n.cfg.RoundWait << min(round-1, 16))
	if err := n.st.DeliveryFailed(ctx, d.ID, r.attempts, r.err.Error(), next, giveUp); err != nil {
		n.log.Error("record webhook failure", "delivery", d.ID, "err", err)
	}
	if giveUp {
		n.log.Error("webhook given up", "delivery", d.ID, "event", d.Kind, "url", d.URL, "err", r.err)
	} else {
		n.log.Warn("webhook failed, will retry", "delivery", d.ID, "event", d.Kind, "url", d.URL, "err", r.err,
			"next", next.Format(time.RFC3339))
	}
}

// Sign is the value of X-Memfault-Signature-256 for a body: "sha256=" and the hex HMAC-SHA256
// of the body under the secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Register serves GET /api/v1/webhooks: the configured URLs (not their secrets), the events
// waiting to be fanned out, and every delivery with its state.
func (n *Notifier) Register(mux *http.ServeMux) {
	mux.HandleFunc("/api/v1/webhooks", func(w http.ResponseWriter, r *http.Request) {
		type delivery struct {
			ID        int64     `json:"id"`
			EventID   int64     `json:"event_id"`
			Event     string    `json:"event"`
			URL       string    `json:"url"`
			Status    string    `json:"status"` // pending, delivered, failed
			Attempts  int       `json:"attempts"`
			NextTry   time.Time `json:"next_attempt,omitempty"`
			LastError string    `json:"last_error,omitempty"`
		}
		waiting, err := n.st.EventsWaiting(r.Context())
		var list []store.Delivery
		if err == nil {
			list, err = n.st.Deliveries(r.Context())
		}
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		out := struct {
			URLs          []string   `json:"urls"`
			EventsWaiting int        `json:"events_waiting"`
			Deliveries    []delivery `json:"deliveries"`
		}{URLs: append([]string{}, n.urls...), EventsWaiting: waiting, Deliveries: []delivery{}}
		for _, d := range list {
			j := delivery{ID: d.ID, EventID: d.EventID, Event: d.Kind, URL: d.URL, Status: d.Status, Attempts: d.Attempts, LastError: d.LastError}
			if d.Status == "pending" {
				j.NextTry = d.NextAttempt.UTC()
			}
			out.Deliveries = append(out.Deliveries, j)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(out)
	})
}
