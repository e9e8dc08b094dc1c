package e2e

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/elfcore"
	"meta-memfault-go/internal/server/worker"
	"meta-memfault-go/internal/testutil/kerneltest"
)

// threadBomb is the x86_64 fixture core with each thread's NT_PRSTATUS repeated n times (one of
// them recurses deeply): a core that claims tens of thousands of threads within the notes limit.
func threadBomb(t *testing.T, full []byte, n int) []byte {
	c, err := elfcore.ReadCore(bytes.NewReader(full), elfcore.DefaultLimits)
	require.NoError(t, err)
	bo := c.Header.ByteOrder()
	notes, err := elfcore.ParseNotes(c.Notes, bo)
	require.NoError(t, err)
	l := &elfcore.Layout{Header: c.Header}
	for _, nt := range notes {
		l.AddNote(nt.Name, nt.Type, nt.Desc)
		if nt.Type == elfcore.NT_PRSTATUS {
			for i := 0; i < n; i++ {
				l.AddNote(nt.Name, nt.Type, nt.Desc)
			}
		}
	}
	for _, p := range c.Loads() {
		if p.Filesz > 0 {
			l.Segments = append(l.Segments, elfcore.Segment{Vaddr: p.Vaddr, Filesz: p.Filesz, Memsz: p.Memsz, Flags: p.Flags})
		}
	}
	var out bytes.Buffer
	_, err = l.Write(&out, elfcore.NewSegmentMemory(bytes.NewReader(full), c.Progs))
	require.NoError(t, err)
	return out.Bytes()
}

// TestAnalysisBudget: a core claiming 20,000 threads is analysed within the per-core budget
// (--max-threads, --max-frames): the job completes, says what it
// left out, and the server goes on serving.
func TestAnalysisBudget(t *testing.T) {
	bin := buildServer(t)
	s := startServer(t, bin, "--symbols-dir", filepath.Join(kerneltest.ModuleRoot(t), "testdata", "cores", "x86_64"),
		"--symbols-dir", "/lib/x86_64-linux-gnu", "--max-frames", "10000")
	stageRaw(t, s, "bomb", gzipped(threadBomb(t, fixtureCore(t, "x86_64"), 2500)))
	var st struct {
		Cores map[string]int `json:"cores"`
	}
	require.Eventually(t, func() bool { s.get(t, "/api/v1/status", &st); return st.Cores["done"]+st.Cores["failed"] == 1 }, 60*time.Second, 100*time.Millisecond)
	require.Equal(t, 1, st.Cores["done"], "%v", st.Cores)
	var c struct {
		Trace struct {
			Threads []apiThread `json:"threads"`
			Notes   []string    `json:"notes"`
		} `json:"trace"`
	}
	s.get(t, "/api/v1/cores/1", &c)
	require.Len(t, c.Trace.Threads, worker.DefaultLimits.MaxThreads)
	require.Contains(t, c.Trace.Notes, "20008 threads; only the first 4096 were analysed")
	frames, spent := 0, 0
	for _, th := range c.Trace.Threads {
		frames += len(th.Frames)
		if th.Stop == "not unwound: the core's budget of 10000 frames is spent" {
			spent++
		}
	}
	t.Logf("%d frames in %d threads, %d threads over budget", frames, len(c.Trace.Threads), spent)
	require.Greater(t, len(c.Trace.Threads[0].Frames), 3, "the crashing thread is unwound")
	require.NotZero(t, spent, "the frame budget ran out")
	require.LessOrEqual(t, frames, 10000*2, "inlined frames at most double it")
}
