package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/server/notify"
	"meta-memfault-go/internal/testutil/kerneltest"
)

// receiver is a webhook endpoint on loopback that records what it accepted. It answers 500 to
// the first fail calls.
type receiver struct {
	mu       sync.Mutex
	fail     int
	calls    int
	accepted []notify.Payload
	badSig   int
	srv      *httptest.Server
}

func newReceiver(t *testing.T, secret string, fail int) *receiver {
	r := &receiver{fail: fail}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.calls++
		if err != nil || r.calls <= r.fail {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		if req.Header.Get("X-Memfault-Signature-256") != notify.Sign(secret, body) {
			r.badSig++
		}
		var p notify.Payload
		if err := json.Unmarshal(body, &p); err != nil || p.Event != req.Header.Get("X-Memfault-Event") {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.accepted = append(r.accepted, p)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) snapshot() (calls int, accepted []notify.Payload, badSig int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls, append([]notify.Payload(nil), r.accepted...), r.badSig
}

type webhookState struct {
	EventsWaiting int `json:"events_waiting"`
	Deliveries    []struct {
		Event    string `json:"event"`
		Status   string `json:"status"`
		Attempts int    `json:"attempts"`
	} `json:"deliveries"`
}

// settled waits until every event is fanned out and no delivery is pending.
func (s *server) webhooksSettled(t *testing.T) webhookState {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var st webhookState
		s.get(t, "/api/v1/webhooks", &st)
		pending := st.EventsWaiting
		for _, d := range st.Deliveries {
			if d.Status == "pending" {
				pending++
			}
		}
		if pending == 0 {
			return st
		}
		require.True(t, time.Now().Before(deadline), "webhooks not settled: %+v", st)
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWebhooks: a receiver on loopback gets exactly one issue.new call per new issue across
// repeated occurrences and two builds, one issue.regression call when an old issue reappears in
// a newer version (and no more for the same version again), none for an older version; its
// first answer is a 500, and the call is retried and delivered once. A restart of the server
// sends nothing again.
func TestWebhooks(t *testing.T) {
	bin := buildServer(t)
	root := kerneltest.ModuleRoot(t)
	const secret = "s3cret"
	recv := newReceiver(t, secret, 1)
	data := t.TempDir()
	args := []string{"--data", data, "--webhook", recv.srv.URL + "/hook", "--webhook-secret", secret,
		"--webhook-retry-wait", "50ms",
		"--symbols-dir", filepath.Join(root, "testdata", "cores"),
		"--symbols-dir", filepath.Join(root, "testdata", "corpus", "c-o2-inline")}
	s := startServer(t, bin, args...)

	cores := 0
	crash := func(full []byte, serial, version string) {
		persist := t.TempDir()
		capture(t, full, persist, "threads", serial, version)
		deliver(t, s, persist, serial, version)
		cores++
		s.waitIssues(t, cores) // one at a time: the order of versions is the order of arrival
	}
	x86, arm := fixtureCore(t, "x86_64"), fixtureCore(t, "aarch64")
	// Issue A in 1.0: three devices on one build, two on another build of the same code.
	for d := 0; d < 3; d++ {
		crash(x86, fmt.Sprintf("dev-%d", d), "1.0")
	}
	for d := 3; d < 5; d++ {
		crash(arm, fmt.Sprintf("dev-%d", d), "1.0")
	}
	// Issue B.
	crash(corpusCore(t, "c-o2-inline", "x86_64"), "dev-9", "1.0")
	// A in an older version: nothing to say.
	crash(x86, "dev-old", "0.9")
	// A in a newer version: a regression, once.
	crash(arm, "dev-new-1", "1.10")
	crash(x86, "dev-new-2", "1.10")
	issues := s.waitIssues(t, cores)
	require.Len(t, issues, 2)

	st := s.webhooksSettled(t)
	calls, got, badSig := recv.snapshot()
	require.Zero(t, badSig, "every call carries the right signature")
	require.Len(t, got, 3, "%+v", got)
	require.Equal(t, 4, calls, "three events, one of them retried after the 500")
	byIssue := map[int64]apiIssue{}
	for _, is := range issues {
		byIssue[is.ID] = is
	}
	var news, regressions []notify.Payload
	for _, p := range got {
		switch p.Event {
		case "issue.new":
			news = append(news, p)
		case "issue.regression":
			regressions = append(regressions, p)
		default:
			t.Fatalf("unexpected event %q", p.Event)
		}
		is, ok := byIssue[p.IssueID]
		require.True(t, ok, "call for issue %d, which does not exist", p.IssueID)
		require.Equal(t, is.Title, p.Title)
		require.Equal(t, fmt.Sprintf("%s/issues/%d", s.url, p.IssueID), p.URL)
		require.Equal(t, "main", p.SoftwareType)
		require.NotEmpty(t, p.Fingerprint)
		require.NotEmpty(t, p.Location, "the crashing function's file:line")
		require.False(t, p.FirstSeen.IsZero() || p.LastSeen.Before(p.FirstSeen))
	}
	require.Len(t, news, 2)
	require.NotEqual(t, news[0].IssueID, news[1].IssueID)
	require.Len(t, regressions, 1)
	r := regressions[0]
	require.Equal(t, "1.10", r.SoftwareVersion)
	require.Equal(t, "crash_segv", r.Function)
	require.ElementsMatch(t, []string{"0.9", "1.0"}, r.PreviousVersions)
	var newA notify.Payload
	for _, p := range news {
		if p.IssueID == r.IssueID {
			newA = p
		}
	}
	require.Equal(t, "1.0", newA.SoftwareVersion, "issue A was new in 1.0")
	require.Len(t, st.Deliveries, 3)
	for _, d := range st.Deliveries {
		require.Equal(t, "delivered", d.Status)
	}

	// A restart on the same data sends nothing again.
	s.Stop()
	s = startServer(t, bin, args...)
	s.webhooksSettled(t)
	crash(x86, "dev-after-restart", "1.0")
	s.webhooksSettled(t)
	calls2, got2, _ := recv.snapshot()
	require.Equal(t, calls, calls2, "%+v", got2[len(got):])
}

// TestWebhookSlowReceiver: a receiver that does not answer holds up no analysis; once it
// answers, every event arrives once.
func TestWebhookSlowReceiver(t *testing.T) {
	bin := buildServer(t)
	root := kerneltest.ModuleRoot(t)
	release := make(chan struct{})
	var mu sync.Mutex
	var events []string
	rs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		<-release
		if req.Context().Err() != nil {
			return // the server gave up on this call (its 10 s timeout) and will try again
		}
		mu.Lock()
		events = append(events, req.Header.Get("X-Memfault-Event"))
		mu.Unlock()
	}))
	defer rs.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	s := startServer(t, bin, "--webhook", rs.URL, "--symbols-dir", filepath.Join(root, "testdata", "cores"),
		"--symbols-dir", filepath.Join(root, "testdata", "corpus", "c-o2-inline"))
	for i, full := range [][]byte{fixtureCore(t, "x86_64"), corpusCore(t, "c-o2-inline", "x86_64")} {
		persist := t.TempDir()
		serial := fmt.Sprintf("dev-%d", i)
		capture(t, full, persist, "threads", serial, "1.0")
		deliver(t, s, persist, serial, "1.0")
		s.waitIssues(t, i+1) // analysed while the receiver sits on the first call
	}
	mu.Lock()
	require.Empty(t, events, "nothing answered yet")
	mu.Unlock()
	close(release)
	st := s.webhooksSettled(t)
	require.Len(t, st.Deliveries, 2)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"issue.new", "issue.new"}, events)
}
