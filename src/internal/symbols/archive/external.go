package archive

import (
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// External decompressors, used when installed unless PureGo is given.
//
// Decompression throughput of a 100 MiB tar of 101 shared libraries from
// /usr/lib/x86_64-linux-gnu (BenchmarkDecompress, 2 cores shared with other jobs; MB/s of tar
// output, see README.md for the whole table):
//
//	bzip2 -9:  compress/bzip2 ~20, bzip2 -dc ~22, lbzip2 -dc ~75 (two threads)
//
// Only bzip2 gains enough to be worth a subprocess: lbzip2 decodes any bzip2 stream in parallel
// (pbzip2 only its own multi-stream files), while for gzip, xz and zstd the Go decoders are
// within ~2x of the C tools (zstd and gzip at par or better).
type extProgram struct {
	name string
	args []string
}

var externals = map[Kind]extProgram{
	Bzip2: {name: "lbzip2", args: []string{"-d", "-c"}},
}

var lookOnce sync.Map // program name -> path ("" when missing)

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
	out    io.ReadCloser
	stderr limitedBuffer
	waited bool
	err    error
}

func startExternal(p *extProgram, src io.Reader) (*decoder, error) {
	e := &extProc{cmd: exec.Command(p.name, p.args...)}
	e.cmd.Stdin = src
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
			e.err = fmt.Errorf("%w: %s: %v: %s", ErrCorrupt, e.cmd.Args[0], werr, e.stderr.String())
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
