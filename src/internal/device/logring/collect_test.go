package logring

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lockedBuffer is a log destination safe to read while Collect writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// TestCollect runs a file source that fails (its path is a directory) and recovers (the
// directory is replaced by a file), and checks the ring gets its lines and the log says each
// state change once.
func TestCollect(t *testing.T) {
	oldMin, oldMax := backoffMin, backoffMax
	backoffMin, backoffMax = 5*time.Millisecond, 20*time.Millisecond
	t.Cleanup(func() { backoffMin, backoffMax = oldMin, oldMax })

	dir := t.TempDir()
	path := filepath.Join(dir, "messages")
	require.NoError(t, os.Mkdir(path, 0o755))
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	r := NewRing(5)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		Collect(ctx, r, []Source{&FileSource{Path: path, Poll: 5 * time.Millisecond}}, log)
		close(done)
	}()

	require.Eventually(t, func() bool { return logs.count("log source failed again") >= 3 }, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, 1, logs.count("log source failed; retrying"), "one warning however often it fails")
	assert.Positive(t, logs.count("not a regular file"), "the error is in the log")

	require.NoError(t, os.Remove(path))
	require.NoError(t, os.WriteFile(path, nil, 0o644))
	require.Eventually(t, func() bool {
		appendFile(t, path, "Apr 18 17:49:31 h app[1]: collected\n")
		return r.Len() > 0
	}, 10*time.Second, 20*time.Millisecond)
	assert.Contains(t, r.Lines()[0], `"MESSAGE":"collected"`)
	require.Eventually(t, func() bool { return logs.count("log source recovered") == 1 }, 10*time.Second, 5*time.Millisecond)

	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Collect did not return after ctx ended")
	}
	assert.Equal(t, 1, logs.count("log source failed; retrying"))
}

func TestCollectNoSources(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	Collect(ctx, NewRing(1), nil, nil) // returns at once; nothing to run
}
