package logring

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func msg(s string) Entry {
	return Entry{TS: time.Date(2024, 4, 18, 17, 49, 31, 0, time.UTC), Fields: map[string]string{"MESSAGE": s}}
}

func messages(t *testing.T, r *Ring) []string {
	t.Helper()
	var out []string
	for _, l := range r.Lines() {
		var w struct {
			Data map[string]string `json:"data"`
		}
		require.NoError(t, json.Unmarshal([]byte(l), &w), l)
		out = append(out, w.Data["MESSAGE"])
	}
	return out
}

func TestEntryJSON(t *testing.T) {
	tests := []struct {
		name string
		e    Entry
		want string
	}{
		{"memfaultd shape", Entry{
			TS: time.Date(2024, 4, 18, 17, 49, 31, 968_123_000, time.UTC),
			Fields: map[string]string{"MESSAGE": "text", "_PID": "123",
				"_SYSTEMD_UNIT": "foo.service", "PRIORITY": "6"},
		}, `{"ts":"2024-04-18T17:49:31.968Z","data":{"MESSAGE":"text","PRIORITY":"6","_PID":"123","_SYSTEMD_UNIT":"foo.service"}}`},
		{"local time to UTC, whole second", Entry{
			TS:     time.Date(2024, 4, 18, 19, 49, 31, 0, time.FixedZone("CEST", 2*3600)),
			Fields: map[string]string{"MESSAGE": "x"},
		}, `{"ts":"2024-04-18T17:49:31.000Z","data":{"MESSAGE":"x"}}`},
		{"MESSAGE always present", Entry{
			TS:     time.Date(2024, 4, 18, 17, 49, 31, 0, time.UTC),
			Fields: map[string]string{"_COMM": "kernel"},
		}, `{"ts":"2024-04-18T17:49:31.000Z","data":{"MESSAGE":"","_COMM":"kernel"}}`},
		{"no HTML escaping, control characters escaped", msg("<b> & \x1b[0m\n"),
			`{"ts":"2024-04-18T17:49:31.000Z","data":{"MESSAGE":"<b> & \u001b[0m\n"}}`},
		{"invalid UTF-8 replaced", msg("bad \xff\xfe end"),
			`{"ts":"2024-04-18T17:49:31.000Z","data":{"MESSAGE":"bad ` + "\uFFFD" + ` end"}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.e.JSON())
		})
	}
}

func TestEntryLimits(t *testing.T) {
	t.Run("long message cut with suffix", func(t *testing.T) {
		n := msg(strings.Repeat("a", 10000)).normalize(time.Time{})
		m := n.Fields["MESSAGE"]
		assert.LessOrEqual(t, len(m), MaxMessageBytes)
		assert.True(t, strings.HasSuffix(m, TruncatedSuffix))
		assert.Equal(t, strings.Repeat("a", MaxMessageBytes-len(TruncatedSuffix)), strings.TrimSuffix(m, TruncatedSuffix))
	})
	t.Run("exactly the limit is kept whole", func(t *testing.T) {
		s := strings.Repeat("b", MaxMessageBytes)
		assert.Equal(t, s, msg(s).normalize(time.Time{}).Fields["MESSAGE"])
	})
	t.Run("cut on a rune boundary", func(t *testing.T) {
		for shift := 0; shift < 4; shift++ {
			s := strings.Repeat("x", shift) + strings.Repeat("€", 2000) // 3-byte runes
			m := msg(s).normalize(time.Time{}).Fields["MESSAGE"]
			assert.True(t, utf8.ValidString(m), "shift %d", shift)
			assert.LessOrEqual(t, len(m), MaxMessageBytes)
			assert.True(t, strings.HasSuffix(m, TruncatedSuffix))
		}
	})
	t.Run("invalid UTF-8 that grows past the limit", func(t *testing.T) {
		s := strings.Repeat("\xff.", MaxMessageBytes/2) // each \xff becomes 3 bytes
		m := msg(s).normalize(time.Time{}).Fields["MESSAGE"]
		assert.True(t, utf8.ValidString(m))
		assert.LessOrEqual(t, len(m), MaxMessageBytes)
		assert.True(t, strings.HasSuffix(m, TruncatedSuffix))
	})
	t.Run("fields bounded", func(t *testing.T) {
		e := msg("m")
		for i := 0; i < 40; i++ {
			e.Fields[fmt.Sprintf("F%02d", i)] = strings.Repeat("v", 1000)
		}
		e.Fields[strings.Repeat("K", 100)] = "long key"
		n := e.normalize(time.Time{})
		assert.Len(t, n.Fields, maxFields)
		assert.Equal(t, "m", n.Fields["MESSAGE"])
		assert.Contains(t, n.Fields, "F00")
		assert.NotContains(t, n.Fields, strings.Repeat("K", 100))
		assert.LessOrEqual(t, len(n.Fields["F00"]), maxValueBytes)
		assert.True(t, strings.HasSuffix(n.Fields["F00"], TruncatedSuffix))
	})
}

func TestRingCapacityWrapOrder(t *testing.T) {
	r := NewRing(3)
	assert.Equal(t, 3, r.Cap())
	assert.Empty(t, r.Lines())
	r.Add(msg("1"))
	r.Add(msg("2"))
	assert.Equal(t, []string{"1", "2"}, messages(t, r))
	for i := 3; i <= 7; i++ {
		r.Add(msg(strconv.Itoa(i)))
	}
	assert.Equal(t, 3, r.Len())
	assert.Equal(t, []string{"5", "6", "7"}, messages(t, r))
	r.Add(msg("8"))
	assert.Equal(t, []string{"6", "7", "8"}, messages(t, r))
}

func TestRingBounds(t *testing.T) {
	r := NewRing(0)
	r.Add(msg("dropped"))
	assert.Equal(t, 0, r.Len())
	assert.Empty(t, r.Lines())
	assert.Equal(t, 0, NewRing(-5).Cap())
	assert.Equal(t, MaxCapacity, NewRing(1<<30).Cap())

	one := NewRing(1)
	one.Add(msg("a"))
	one.Add(msg("b"))
	assert.Equal(t, []string{"b"}, messages(t, one))
}

func TestRingCopiesAndStamps(t *testing.T) {
	r := NewRing(2)
	fields := map[string]string{"MESSAGE": "original"}
	before := time.Now()
	r.Add(Entry{Fields: fields})
	fields["MESSAGE"] = "changed later"
	got := r.Entries()
	require.Len(t, got, 1)
	assert.Equal(t, "original", got[0].Fields["MESSAGE"])
	assert.False(t, got[0].TS.Before(before), "a zero TS becomes the time of Add")
	assert.WithinDuration(t, time.Now(), got[0].TS, time.Minute)
}

func TestRingConcurrent(t *testing.T) {
	const writers, perWriter, capacity = 8, 2000, 100
	r := NewRing(capacity)
	ctx, cancel := context.WithCancel(context.Background())
	var readers sync.WaitGroup
	for i := 0; i < 2; i++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for ctx.Err() == nil {
				assert.LessOrEqual(t, len(r.Lines()), capacity)
			}
		}()
	}
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				r.Add(msg(fmt.Sprintf("%d:%d", w, i)))
			}
		}()
	}
	wg.Wait()
	cancel()
	readers.Wait()

	got := messages(t, r)
	require.Len(t, got, capacity)
	last := map[string]int{}
	for _, m := range got {
		w, i, ok := strings.Cut(m, ":")
		require.True(t, ok, m)
		n, err := strconv.Atoi(i)
		require.NoError(t, err)
		if prev, seen := last[w]; seen {
			assert.Greater(t, n, prev, "writer %s's lines stay in order", w)
		}
		last[w] = n
	}
	// The last entry added by some writer is its final one.
	final := 0
	for _, n := range last {
		if n == perWriter-1 {
			final++
		}
	}
	assert.GreaterOrEqual(t, final, 1)
}

// sink collects what a source emits.
type sink struct{ ch chan Entry }

func newSink() *sink { return &sink{ch: make(chan Entry, 4096)} }

func (s *sink) emit(e Entry) { s.ch <- e }

// next returns the next entry whose fields match keep (all entries when keep is nil).
func (s *sink) next(t *testing.T, keep func(Entry) bool) Entry {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-s.ch:
			if keep == nil || keep(e) {
				return e
			}
		case <-deadline:
			t.Fatal("no entry within 10 s")
			return Entry{}
		}
	}
}

// none asserts that nothing more arrives within d.
func (s *sink) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case e := <-s.ch:
		t.Errorf("unexpected entry %v", e.Fields)
	case <-time.After(d):
	}
}

// run starts src and returns a function that stops it and returns Run's result.
func run(t *testing.T, src Source, emit func(Entry)) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, emit) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				err = fmt.Errorf("%s did not stop within 10 s", src.Name())
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}
