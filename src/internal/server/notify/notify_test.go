package notify

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/server/store"
)

// addIssue stores one analysed core of a new issue, which writes an issue.new event.
func addIssue(t *testing.T, st *store.Store, uuid, fingerprint string) {
	ctx := context.Background()
	_, id, err := st.AddEntry(ctx, store.Entry{UUID: uuid, Type: "coredump", DeviceSerial: "d1", Manifest: "{}"},
		&store.CoreInput{Blob: "b", Compression: "gzip", DeviceSerial: "d1", SoftwareType: "main", SoftwareVersion: "1.0", Captured: time.Now()})
	require.NoError(t, err)
	ok, err := st.ClaimCore(ctx, id)
	require.NoError(t, err)
	require.True(t, ok)
	_, created, err := st.FinishCore(ctx, id, store.Result{Fingerprint: fingerprint, Title: "SIGSEGV in f (f.c:1)", Signal: "SIGSEGV",
		FingerprintFrames: `["f"]`, Trace: "{}", Function: "f", Location: "f.c:1"})
	require.NoError(t, err)
	require.True(t, created)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestWebhookOutboxSurvivesRestart: a receiver that is down through a whole round leaves the
// delivery pending in SQLite; a new notifier on the reopened store delivers it once, when the
// receiver is back, with the same body, delivery id and a valid signature.
func TestWebhookOutboxSurvivesRestart(t *testing.T) {
	var mu sync.Mutex
	down := true
	var got []string
	var ids []string
	rs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if down {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if r.Header.Get("X-Memfault-Signature-256") != Sign("k", b) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		got = append(got, string(b))
		ids = append(ids, r.Header.Get("X-Memfault-Delivery"))
	}))
	defer rs.Close()
	cfg := Config{Hooks: []Hook{{URL: rs.URL, Secret: "k"}}, PublicURL: "http://server:1/", RetryMax: 1,
		RetryWaitMin: 10 * time.Millisecond, RetryWaitMax: 10 * time.Millisecond, RoundWait: 20 * time.Millisecond, Rounds: 1000}

	dir := t.TempDir()
	st, err := store.Open(dir)
	require.NoError(t, err)
	addIssue(t, st, "u1", "fp1")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { New(cfg, st, quiet()).Run(ctx); close(done) }()
	// Wait until at least one round failed.
	require.Eventually(t, func() bool {
		ds, err := st.Deliveries(context.Background())
		return err == nil && len(ds) == 1 && ds[0].Attempts >= 2 && ds[0].LastError != ""
	}, 30*time.Second, 10*time.Millisecond)
	cancel()
	<-done
	require.NoError(t, st.Close())

	mu.Lock()
	down = false
	mu.Unlock()
	st, err = store.Open(dir)
	require.NoError(t, err)
	defer st.Close()
	ctx, cancel = context.WithCancel(context.Background())
	done = make(chan struct{})
	go func() { New(cfg, st, quiet()).Run(ctx); close(done) }()
	require.Eventually(t, func() bool {
		ds, err := st.Deliveries(context.Background())
		return err == nil && len(ds) == 1 && ds[0].Status == "delivered"
	}, 30*time.Second, 10*time.Millisecond)
	// A second event after the restart goes out too, and the first is not repeated.
	addIssue(t, st, "u2", "fp2")
	require.Eventually(t, func() bool {
		ds, err := st.Deliveries(context.Background())
		return err == nil && len(ds) == 2 && ds[1].Status == "delivered"
	}, 30*time.Second, 10*time.Millisecond)
	cancel()
	<-done

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, 2)
	require.NotEqual(t, ids[0], ids[1])
	var p Payload
	require.NoError(t, json.Unmarshal([]byte(got[0]), &p))
	require.Equal(t, "issue.new", p.Event)
	require.Equal(t, "f", p.Function)
	require.Equal(t, "f.c:1", p.Location)
	require.Equal(t, "1.0", p.SoftwareVersion)
	require.Equal(t, "http://server:1/issues/1", p.URL)
}

// TestWebhookGivesUp: a receiver that never accepts ends with the delivery failed after the
// configured rounds, with the receiver's answer as the error; nothing is sent after that.
func TestWebhookGivesUp(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	rs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		mu.Unlock()
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer rs.Close()
	st, err := store.Open(t.TempDir())
	require.NoError(t, err)
	defer st.Close()
	addIssue(t, st, "u1", "fp1")
	cfg := Config{Hooks: []Hook{{URL: rs.URL}}, RetryMax: 2, RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond,
		RoundWait: time.Millisecond, Rounds: 2}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { New(cfg, st, quiet()).Run(ctx); close(done) }()
	require.Eventually(t, func() bool {
		ds, err := st.Deliveries(context.Background())
		return err == nil && len(ds) == 1 && ds[0].Status == "failed"
	}, 30*time.Second, 10*time.Millisecond)
	cancel()
	<-done
	ds, err := st.Deliveries(context.Background())
	require.NoError(t, err)
	require.Equal(t, 6, ds[0].Attempts, "two rounds of three tries")
	require.Contains(t, ds[0].LastError, "500")
	mu.Lock()
	require.Equal(t, 6, calls)
	mu.Unlock()
}

func TestParseHooks(t *testing.T) {
	hooks, err := ParseHooks([]byte(`{"webhooks": [{"url": "https://example.invalid/x", "secret": "s"}, {"url": "http://127.0.0.1:9/y"}]}`))
	require.NoError(t, err)
	require.Equal(t, []Hook{{URL: "https://example.invalid/x", Secret: "s"}, {URL: "http://127.0.0.1:9/y"}}, hooks)
	for name, bad := range map[string]string{
		"not json":     `{`,
		"unknown key":  `{"hooks": []}`,
		"no scheme":    `{"webhooks": [{"url": "example.com/x"}]}`,
		"other scheme": `{"webhooks": [{"url": "ftp://example.com/x"}]}`,
		"wrong type":   `{"webhooks": {"url": "http://a/"}}`,
		"missing host": `{"webhooks": [{"url": "http:///x"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseHooks([]byte(bad))
			require.Error(t, err)
		})
	}
}
