// Command benchtool measures memfault-server for bench/server.sh (a benchmark tool, not a
// product):
//
//	benchtool analyze -core FILE -symbols-dir DIR... -n N [-drop-caches] [-label L]
//	                  [-dir D -gdb 'CMD' -eu-stack 'CMD'] [-v] [-cpuprofile F] [-memprofile F]
//	    unwind+symbolize one uncompressed core: N cold runs and N warm runs, interleaved with
//	    N runs of each given command (a whole process, run by sh in D; the order of the cold
//	    run and the commands rotates from round to round); prints one line with
//	    the median milliseconds of each and the ratios gdb/cold and eu-stack/cold.
//	    cold: a new symbol store, the server's state for a build-id it has not seen since it
//	    started: the symbol directories are indexed (a server does that at start), nothing is
//	    parsed, no symbol file is open, no DWARF is in memory. warm: the same store after an
//	    untimed run, i.e. a second core with the same modules. -drop-caches (root): the OS
//	    page cache is dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every cold run
//	    and every command run; without it, the files are in the page cache. Each run opens
//	    the core as a server job does (worker.CoreFile: read into memory when small), timed.
//	benchtool ingest -url URL -key K -core FILE [-clients 8] [-n 2000] [-warmup 16] [-pid PID]
//	    upload the core (uncompressed, a fresh entry uuid each time) as MAR zips from concurrent
//	    clients, each doing what a device does (prepare, PUT, commit) one core after another;
//	    waits until all are analysed; prints cores/s uploaded and analysed, and p50/p99/max of
//	    the time from a commit's answer to the core analysed (its issue visible in the API).
//	    The warm-up cores go first and are not measured: the first core of a build-id loads
//	    its symbols, a start-up cost. The analysed count comes from polling /api/v1/status
//	    (every -poll); the server takes cores in commit order, so the k-th core analysed is
//	    paired with the k-th commit (close to exact; a few workers run at once).
//	    Before that (-baseline, default on) the same clients send the same zips through the
//	    same three requests to a sink server in this process that only reads them: the HTTP
//	    exchange of the same bytes on the same machine at the same moment, the ceiling any
//	    server could reach here; "ratio" is ours over it. With -pid, the server's CPU time per
//	    core (from /proc) and its peak RSS (VmHWM) are printed; the client's own CPU per core
//	    always is. CPU per core is the figure that least depends on the machine's load.
package main

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"meta-memfault-go/internal/server/group"
	"meta-memfault-go/internal/server/store"
	"meta-memfault-go/internal/server/symstore"
	"meta-memfault-go/internal/server/worker"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchtool analyze|ingest ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "analyze":
		err = analyze(os.Args[2:])
	case "ingest":
		err = ingest(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		os.Exit(1)
	}
}

func analyze(args []string) error {
	fs := flag.NewFlagSet("analyze", flag.ExitOnError)
	corePath := fs.String("core", "", "uncompressed core")
	n := fs.Int("n", 10, "runs of each kind")
	label := fs.String("label", "", "name of the row (default: the core's path)")
	drop := fs.Bool("drop-caches", false, "drop the page cache before every cold run and command run (root)")
	dir := fs.String("dir", ".", "working directory of the commands")
	gdbCmd := fs.String("gdb", "", "gdb command line (sh), measured as a whole process")
	euCmd := fs.String("eu-stack", "", "eu-stack command line (sh), measured as a whole process")
	var dirs multi
	fs.Var(&dirs, "symbols-dir", "symbol directory (repeatable)")
	prof := fs.String("cpuprofile", "", "write a CPU profile of the cold runs")
	memProf := fs.String("memprofile", "", "write a profile of the memory allocated by the cold runs")
	verbose := fs.Bool("v", false, "print each cold run's wall and CPU time and page faults on stderr")
	fs.Parse(args)
	worker.TuneGC() // as the server runs
	if *label == "" {
		*label = *corePath
	}
	f, err := os.Open(*corePath)
	if err != nil {
		return err
	}
	defer f.Close()
	info, _ := f.Stat()
	tmp, err := os.MkdirTemp("", "benchtool-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	st, err := store.Open(tmp)
	if err != nil {
		return err
	}
	defer st.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	g, _ := group.New(group.DefaultRules())
	meta := &store.Core{}
	// Indexing the symbol directories is the server's start-up cost, not per core.
	syms, err := symstore.New(st, dirs, log)
	if err != nil {
		return err
	}
	dropCaches := func() error {
		if !*drop {
			return nil
		}
		syscall.Sync()
		return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
	}
	frames := 0
	analyzeOnce := func(s *symstore.Store) (time.Duration, error) {
		start := time.Now()
		// The core is opened as a server job opens it (read into memory when small), in the
		// timed part.
		cf, err := os.Open(*corePath)
		if err != nil {
			return 0, err
		}
		r, size, done, err := worker.CoreFile(cf, info.Size())
		if err != nil {
			return 0, err
		}
		a, err := worker.AnalyzeCore(context.Background(), r, size, meta, s, g, worker.Limits{})
		done()
		d := time.Since(start)
		if err != nil {
			return 0, err
		}
		frames = 0
		for _, t := range a.Trace.Threads {
			frames += len(t.Frames)
		}
		return d, nil
	}
	runCmd := func(cmd string) (time.Duration, error) {
		c := exec.Command("sh", "-c", "exec "+cmd)
		c.Dir = *dir
		start := time.Now()
		err := c.Run()
		d := time.Since(start)
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 1 && cmd == *euCmd {
			err = nil // eu-stack: some frames had errors, the rest was printed
		}
		if err != nil {
			return 0, fmt.Errorf("%s: %w", cmd, err)
		}
		return d, nil
	}
	if *memProf != "" {
		runtime.MemProfileRate = 4096 // before the cold runs: what they allocate, in detail
	}
	stopProfile, err := startCPUProfile(*prof)
	if err != nil {
		return err
	}
	defer stopProfile()
	// Interleaved, so that the load of the machine falls alike on every column; the order of
	// the three rotates from round to round, so that each follows each of the others as often:
	// a run right after another process read the same files can be twice as slow (seen here
	// with our cold run after eu-stack on the same core: 2-4 times the page faults).
	var cold, warm, gdbT, euT []time.Duration
	coldRun := func(i int) error {
		if err := dropCaches(); err != nil {
			return err
		}
		var ru0, ru1 syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
		d, err := analyzeOnce(syms.Fresh())
		if err != nil {
			return err
		}
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
		if *verbose {
			cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
			fmt.Fprintf(os.Stderr, "cold run %d: %.1f ms wall, %.1f ms cpu (%.1f sys), %d minor faults\n", i, ms(d), ms(cpu),
				ms(time.Duration(ru1.Stime.Nano()-ru0.Stime.Nano())), ru1.Minflt-ru0.Minflt)
		}
		cold = append(cold, d)
		return nil
	}
	cmdRun := func(cmd string, out *[]time.Duration) func(int) error {
		return func(int) error {
			if cmd == "" {
				return nil
			}
			if err := dropCaches(); err != nil {
				return err
			}
			d, err := runCmd(cmd)
			if err != nil {
				return err
			}
			*out = append(*out, d)
			return nil
		}
	}
	round := []func(int) error{coldRun, cmdRun(*gdbCmd, &gdbT), cmdRun(*euCmd, &euT)}
	for i := 0; i < *n; i++ {
		for k := range round {
			if err := round[(i+k)%len(round)](i); err != nil {
				return err
			}
		}
	}
	stopProfile()
	if *memProf != "" {
		mf, err := os.Create(*memProf)
		if err != nil {
			return err
		}
		err = pprof.Lookup("allocs").WriteTo(mf, 0)
		mf.Close()
		if err != nil {
			return err
		}
	}
	// One untimed run fills the store: warm is a core whose modules' symbols are parsed.
	if _, err := analyzeOnce(syms); err != nil {
		return err
	}
	for i := 0; i < *n; i++ {
		d, err := analyzeOnce(syms)
		if err != nil {
			return err
		}
		warm = append(warm, d)
	}
	col := func(ds []time.Duration) string {
		if len(ds) == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f", ms(median(ds)))
	}
	ratio := func(ds []time.Duration) string {
		if len(ds) == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1fx", float64(median(ds))/float64(median(cold)))
	}
	pc := "page cache kept"
	if *drop {
		pc = "page cache dropped"
	}
	fmt.Printf("%-26s %6d %9s %8s %9s %9s %9s %9s   %s, median of %d\n", *label, frames, col(cold), col(warm), col(gdbT), col(euT),
		ratio(gdbT), ratio(euT), pc, *n)
	return nil
}

// startCPUProfile writes a CPU profile to path (nothing when path is empty) until stop, which
// may be called again.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { pprof.StopCPUProfile(); f.Close() }) }, nil
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func uuid() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func marZip(id string, core []byte, key string) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	name := "core-" + id + ".elf"
	w, _ := zw.CreateHeader(&zip.FileHeader{Name: id + "/" + name, Method: zip.Store})
	w.Write(core)
	m := fmt.Sprintf(`{"schema_version":1,"collection_time":{"timestamp":%q},"device":{"project_key":%q,"device_serial":"bench-%s",
		"hardware_version":"evt","software_type":"main","software_version":"1.0"},"producer":{"id":"memfaultd","version":"bench"},
		"type":"elf-coredump","metadata":{"coredump_file_name":%q}}`, time.Now().UTC().Format(time.RFC3339), key, id[:4], name)
	w, _ = zw.CreateHeader(&zip.FileHeader{Name: id + "/manifest.json", Method: zip.Store})
	w.Write([]byte(m))
	zw.Close()
	return buf.Bytes()
}

func post(c *http.Client, url, key string, body any) (map[string]any, error) {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	req.Header.Set("Memfault-Project-Key", key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode >= 300 {
		return nil, fmt.Errorf("%s: %s %v", url, resp.Status, out)
	}
	return out, nil
}

func doneCount(c *http.Client, base string) (int, error) {
	resp, err := c.Get(base + "/api/v1/status")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var st struct {
		Cores map[string]int `json:"cores"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return 0, err
	}
	return st.Cores["done"] + st.Cores["failed"], nil
}

// procStat is what /proc/<pid> says about the server: CPU time used and peak RSS.
type procStat struct {
	cpu   time.Duration
	hwmKB int64
}

func readProc(pid int) (procStat, error) {
	var ps procStat
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ps, err
	}
	// Fields after the command name (which may hold spaces) start at state; utime and
	// stime are fields 14 and 15 of the whole line, in clock ticks (100 per second on Linux).
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return ps, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	ps.cpu = time.Duration(ut+st) * 10 * time.Millisecond
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &ps.hwmKB)
		}
	}
	return ps, nil
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// uploadOne sends one core as a device does: prepare, PUT of the MAR zip, commit.
// phases sums the time the clients spent in each request of the measured run.
type phases struct {
	mu                     sync.Mutex
	on                     bool
	n                      int
	zip, prep, put, commit time.Duration
}

func (p *phases) add(zip, prep, put, commit time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.on {
		p.n++
		p.zip, p.prep, p.put, p.commit = p.zip+zip, p.prep+prep, p.put+put, p.commit+commit
	}
}

var clientPhases phases

func uploadOne(c *http.Client, base, key string, core []byte) error {
	t0 := time.Now()
	z := marZip(uuid(), core, key)
	t1 := time.Now()
	out, err := post(c, base+"/api/v0/upload", key, map[string]any{"size": len(z)})
	t2 := time.Now()
	if err != nil {
		return err
	}
	data, ok := out["data"].(map[string]any)
	if !ok {
		return fmt.Errorf("prepare: unexpected answer %v", out)
	}
	req, _ := http.NewRequest(http.MethodPut, data["upload_url"].(string), bytes.NewReader(z))
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PUT: %s", resp.Status)
	}
	t3 := time.Now()
	_, err = post(c, base+"/api/v0/upload/mar", key, map[string]any{"file": map[string]any{"token": data["token"]}})
	clientPhases.add(t1.Sub(t0), t2.Sub(t1), t3.Sub(t2), time.Since(t3))
	return err
}

// sendAll uploads n cores from the given number of concurrent clients; each commit's time is
// passed to committed.
func sendAll(c *http.Client, base, key string, core []byte, clients, n int, committed func(time.Time)) error {
	jobs := make(chan int)
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				if err := uploadOne(c, base, key, core); err != nil {
					errs <- err
					return
				}
				committed(time.Now())
			}
		}()
	}
	defer wg.Wait()
	defer close(jobs)
	for i := 0; i < n; i++ {
		select {
		case jobs <- i:
		case err := <-errs:
			return err
		}
	}
	return nil
}

// sinkServer answers the three requests of the device protocol without doing anything else:
// prepare gives an upload URL, PUT reads the body into io.Discard, commit answers 202. It is
// the baseline: the HTTP exchange of the same bytes from the same clients on the same machine.
func sinkServer() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	base := "http://" + ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v0/upload", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"upload_url": base + "/upload/" + uuid(), "token": uuid()}})
	})
	mux.HandleFunc("/upload/", func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
	mux.HandleFunc("/api/v0/upload/mar", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"entries": 1, "repeated": 0}})
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	return base, func() { srv.Close() }, nil
}

func ingest(args []string) error {
	fs := flag.NewFlagSet("ingest", flag.ExitOnError)
	base := fs.String("url", "", "server URL")
	key := fs.String("key", "", "project key")
	corePath := fs.String("core", "", "uncompressed core to send")
	clients := fs.Int("clients", 8, "concurrent clients")
	n := fs.Int("n", 2000, "cores measured")
	warmup := fs.Int("warmup", 16, "cores sent and analysed before the measured run (symbol loading of the first core is start-up)")
	pid := fs.Int("pid", 0, "server process: report its CPU time per core and its peak RSS")
	baseline := fs.Bool("baseline", true, "first measure the same uploads against a sink server in this process")
	poll := fs.Duration("poll", 10*time.Millisecond, "interval of the status polls that see cores analysed")
	prof := fs.String("cpuprofile", "", "write a CPU profile of this client during the measured run")
	fs.Parse(args)
	core, err := os.ReadFile(*corePath)
	if err != nil {
		return err
	}
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *clients}}
	// The baseline runs before and after the measured run; the ratio uses their mean.
	var sinkRates []float64
	runBaseline := func(when string) error {
		if !*baseline {
			return nil
		}
		sinkURL, stop, err := sinkServer()
		if err != nil {
			return err
		}
		defer stop()
		sc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *clients}}
		cpu0 := selfCPU()
		start := time.Now()
		if err := sendAll(sc, sinkURL, *key, core, *clients, *n, func(time.Time) {}); err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		el := time.Since(start)
		cpu := selfCPU() - cpu0
		rate := float64(*n) / el.Seconds()
		sinkRates = append(sinkRates, rate)
		fmt.Printf("baseline %s: %d uploads (prepare, PUT, commit) of the same MAR zips to a sink server in the client process: %.1f s, %.0f cores/s, %.2f ms CPU per core (client and sink)\n",
			when, *n, el.Seconds(), rate, ms(cpu)/float64(*n))
		return nil
	}
	if err := runBaseline("before"); err != nil {
		return err
	}
	if *warmup > 0 {
		before, err := doneCount(c, *base)
		if err != nil {
			return err
		}
		if err := sendAll(c, *base, *key, core, *clients, *warmup, func(time.Time) {}); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(10 * time.Millisecond) {
			d, err := doneCount(c, *base)
			if err != nil {
				return err
			}
			if d-before >= *warmup {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("warm-up: only %d of %d cores analysed", d-before, *warmup)
			}
		}
	}
	before, err := doneCount(c, *base)
	if err != nil {
		return err
	}
	var ps0 procStat
	if *pid != 0 {
		if ps0, err = readProc(*pid); err != nil {
			return err
		}
	}
	stopProfile, err := startCPUProfile(*prof)
	if err != nil {
		return err
	}
	defer stopProfile()
	var mu sync.Mutex
	var commits []time.Time
	clientPhases.on = true
	cpu0 := selfCPU()
	start := time.Now()
	// Watch the analysed count: the server works in commit order, so the k-th core analysed
	// is (close to) the k-th committed.
	var seen []time.Time
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for len(seen) < *n {
			d, err := doneCount(c, *base)
			if err == nil {
				now := time.Now()
				for len(seen) < d-before {
					seen = append(seen, now)
				}
			}
			if time.Since(start) > 10*time.Minute {
				return
			}
			time.Sleep(*poll)
		}
	}()
	err = sendAll(c, *base, *key, core, *clients, *n, func(t time.Time) {
		mu.Lock()
		commits = append(commits, t)
		mu.Unlock()
	})
	if err != nil {
		return err
	}
	sent := time.Since(start)
	clientPhases.mu.Lock()
	clientPhases.on = false
	clientPhases.mu.Unlock()
	<-watchDone
	if len(seen) < *n {
		return fmt.Errorf("only %d of %d cores analysed", len(seen), *n)
	}
	elapsed := seen[*n-1].Sub(start)
	clientCPU := selfCPU() - cpu0
	sort.Slice(commits, func(i, j int) bool { return commits[i].Before(commits[j]) })
	lat := make([]time.Duration, *n)
	for i := range lat {
		lat[i] = max(seen[i].Sub(commits[i]), 0)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	rate := float64(*n) / elapsed.Seconds()
	fmt.Printf("ingest %d cores of %d bytes from %d clients (after %d warm-up cores): %.1f s (all committed after %.1f s), %.0f cores/s uploaded and analysed; commit->analysed p50 %.0f ms, p99 %.0f ms, max %.0f ms\n",
		*n, len(core), *clients, *warmup, elapsed.Seconds(), sent.Seconds(), rate, ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100]), ms(lat[len(lat)-1]))
	if p := &clientPhases; p.n > 0 {
		avg := func(d time.Duration) float64 { return ms(d) / float64(p.n) }
		fmt.Printf("per upload, mean over the clients: zip %.1f ms, prepare %.1f ms, PUT %.1f ms, commit %.1f ms\n",
			avg(p.zip), avg(p.prep), avg(p.put), avg(p.commit))
	}
	fmt.Printf("client CPU: %.2f ms per core (zips, HTTP, status polls every %v)\n", ms(clientCPU)/float64(*n), *poll)
	if *pid != 0 {
		ps1, err := readProc(*pid)
		if err != nil {
			return err
		}
		fmt.Printf("server CPU: %.2f ms per core; server peak RSS (VmHWM): %d kB\n", ms(ps1.cpu-ps0.cpu)/float64(*n), ps1.hwmKB)
	}
	if err := runBaseline("after"); err != nil {
		return err
	}
	if len(sinkRates) == 2 {
		fmt.Printf("ratio ingest/baseline: %.2f\n", rate/((sinkRates[0]+sinkRates[1])/2))
	}
	return nil
}
