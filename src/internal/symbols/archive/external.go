package archive

import (
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// External decompressors, used when installed unless PureGo is given. Figures: README.md.
//
// Only bzip2 and xz gain enough to be worth a subprocess: per CPU second, lbzip2 decodes bzip2
// about twice as fast as bzip2 and compress/bzip2, and xz decodes xz about 2.5 times as fast as
// github.com/ulikunitz/xz. The Go zstd and gzip decoders are within 1.3x of the C tools.
//
// Both get half the CPUs (at least one thread): the rest of the pipeline (reading the tar,
// eu-unstrip, uploads) needs the others, and on an oversubscribed machine lbzip2 with more
// threads than free cores was measured 2-3 times slower than with one.
type extProgram struct {
	name string
	args func(lim Limits) []string
}

func extThreads() string { return strconv.Itoa(max(1, runtime.NumCPU()/2)) }

var externals = map[Kind]extProgram{
	Bzip2: {name: "lbzip2", args: func(Limits) []string { return []string{"-d", "-c", "-n", extThreads()} }},
	// The xz guard in front already refuses a dictionary over MaxWindow; the memory limit bounds
	// what the threads may use on top (xz lowers their number to fit).
	XZ: {name: "xz", args: func(lim Limits) []string {
		return []string{"-d", "-c", "-q", "-T", extThreads(), "--memlimit-decompress=" + strconv.FormatInt(4*lim.window(), 10)}
	}},
}

var lookOnce sync.Map // program name -> path ("" when missing)

// externalFor returns the program for k with its full path, or nil when it is not installed.
func externalFor(k Kind) *extProgram {
	p, ok := externals[k]
	if !ok {
		return nil
	}
	path, found := lookOnce.Load(p.name)
	if !found {
		lp, err := exec.LookPath(p.name)
		if err != nil {
			lp = ""
		}
		path, _ = lookOnce.LoadOrStore(p.name, lp)
	}
	if path.(string) == "" {
		return nil
	}
	return &extProgram{name: path.(string), args: p.args}
}

// extProc is a running decompressor: stdin is fed from the archive, stdout is the tar stream.
// Its exit status is checked when stdout ends, so a stream it rejects is an error, not an EOF.
type extProc struct {
	cmd    *exec.Cmd
	in     *errRecorder
	out    io.ReadCloser
	stderr limitedBuffer
	waited bool
	err    error
}

func startExternal(p *extProgram, src io.Reader, lim Limits) (*decoder, error) {
	e := &extProc{cmd: exec.Command(p.name, p.args(lim)...), in: &errRecorder{r: src}}
	e.cmd.Stdin = e.in
	e.cmd.Stderr = &e.stderr
	// LBZIP2, BZIP2 and BZIP insert options; a clean environment keeps the command as written.
	e.cmd.Env = []string{"LC_ALL=C"}
	// Once the program has exited, do not wait long for the goroutine feeding its stdin (src
	// may be a pipe that blocks).
	e.cmd.WaitDelay = 5 * time.Second
	out, err := e.cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.name, err)
	}
	e.out = out
	if err := e.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", p.name, err)
	}
	name := p.name
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	return &decoder{Reader: e, name: name, close: e.Close}, nil
}

func (e *extProc) Read(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.out.Read(p)
	if err == io.EOF {
		e.waited = true
		if werr := e.cmd.Wait(); werr != nil {
			if ierr := e.in.failed(); ierr != nil { // the program saw its input cut: say why
				e.err = ierr
				return n, e.err
			}
			kind, msg := ErrCorrupt, e.stderr.String()
			if strings.Contains(msg, "nexpected end") { // xz: "Unexpected end of input"
				kind = ErrTruncated
			}
			e.err = fmt.Errorf("%w: %s: %v: %s", kind, e.cmd.Args[0], werr, msg)
			return n, e.err
		}
	}
	return n, err
}

// Close stops the program if it is still running.
func (e *extProc) Close() error {
	if e.waited {
		return nil
	}
	e.waited = true
	e.out.Close()
	if e.cmd.Process != nil {
		_ = e.cmd.Process.Kill() // it may have exited already; Wait reaps it either way
	}
	_ = e.cmd.Wait() // killed on purpose: its status says nothing
	return nil
}

// limitedBuffer keeps the first 4 KiB written to it (a decompressor's complaint).
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := 4096 - b.buf.Len(); room > 0 {
		if len(p) > room {
			b.buf.Write(p[:room])
		} else {
			b.buf.Write(p)
		}
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.TrimSpace(b.buf.String())
}

// errRecorder remembers the first error of the program's input other than io.EOF (the xz guard's
// refusal, a failing file), which explains the program's failure better than the program can.
// It is written by the goroutine feeding the program.
type errRecorder struct {
	r   io.Reader
	err atomic.Pointer[error]
}

func (e *errRecorder) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err.CompareAndSwap(nil, &err)
	}
	return n, err
}

func (e *errRecorder) failed() error {
	if p := e.err.Load(); p != nil {
		return *p
	}
	return nil
}
