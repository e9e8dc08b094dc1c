// Command benchtool measures memfault-server for bench/server.sh (a benchmark tool, not a
// product):
//
//	benchtool analyze -core FILE -symbols-dir DIR... -n N [-drop-caches] [-label L]
//	                  [-dir D -gdb 'CMD' -eu-stack 'CMD']
//	    unwind+symbolize one uncompressed core: N cold runs and N warm runs, interleaved with
//	    N runs of each given command (a whole process, run by sh in D); prints one line with
//	    the median milliseconds of each and the ratios gdb/cold and eu-stack/cold.
//	    cold: a new symbol store, the server's state for a build-id it has not seen since it
//	    started: the symbol directories are indexed (a server does that at start), nothing is
//	    parsed, no symbol file is open, no DWARF is in memory. warm: the same store after an
//	    untimed run, i.e. a second core with the same modules. -drop-caches (root): the OS
//	    page cache is dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every cold run
//	    and every command run; without it, the files are in the page cache.
//	benchtool ingest -url URL -key K -core FILE -clients 8 -n 400
//	    upload the core (uncompressed, fresh uuid each time) as MAR zips from concurrent
//	    clients; waits until all are analysed; prints cores/s and p50/p99 commit-to-analysed
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
	"net/http"
	"os"
	"os/exec"
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
	verbose := fs.Bool("v", false, "print each cold run's wall and CPU time and page faults on stderr")
	fs.Parse(args)
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
		a, err := worker.AnalyzeCore(context.Background(), f, info.Size(), meta, s, g, worker.Limits{})
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
	if *prof != "" {
		pf, err := os.Create(*prof)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(pf)
		defer pprof.StopCPUProfile()
	}
	// Interleaved, so that the load of the machine falls alike on every column.
	var cold, warm, gdbT, euT []time.Duration
	for i := 0; i < *n; i++ {
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
		for _, c := range []struct {
			cmd string
			out *[]time.Duration
		}{{*gdbCmd, &gdbT}, {*euCmd, &euT}} {
			if c.cmd == "" {
				continue
			}
			if err := dropCaches(); err != nil {
				return err
			}
			d, err := runCmd(c.cmd)
			if err != nil {
				return err
			}
			*c.out = append(*c.out, d)
		}
	}
	if *prof != "" {
		pprof.StopCPUProfile()
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

func ingest(args []string) error {
	fs := flag.NewFlagSet("ingest", flag.ExitOnError)
	base := fs.String("url", "", "server URL")
	key := fs.String("key", "", "project key")
	corePath := fs.String("core", "", "uncompressed core to send")
	clients := fs.Int("clients", 8, "concurrent clients")
	n := fs.Int("n", 400, "cores in all")
	fs.Parse(args)
	core, err := os.ReadFile(*corePath)
	if err != nil {
		return err
	}
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *clients}}
	before, err := doneCount(c, *base)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var commits []time.Time
	jobs := make(chan int)
	errs := make(chan error, *clients)
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < *clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				z := marZip(uuid(), core, *key)
				out, err := post(c, *base+"/api/v0/upload", *key, map[string]any{"size": len(z)})
				if err != nil {
					errs <- err
					return
				}
				data := out["data"].(map[string]any)
				req, _ := http.NewRequest(http.MethodPut, data["upload_url"].(string), bytes.NewReader(z))
				resp, err := c.Do(req)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if _, err := post(c, *base+"/api/v0/upload/mar", *key, map[string]any{"file": map[string]any{"token": data["token"]}}); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				commits = append(commits, time.Now())
				mu.Unlock()
			}
		}()
	}
	// Watch the analysed count: the server works in commit order, so the k-th core analysed
	// is (close to) the k-th committed.
	var seen []time.Time
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for len(seen) < *n {
			d, err := doneCount(c, *base)
			if err == nil {
				for len(seen) < d-before {
					seen = append(seen, time.Now())
				}
			}
			if time.Since(start) > 10*time.Minute {
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	for i := 0; i < *n; i++ {
		select {
		case jobs <- i:
		case err := <-errs:
			return err
		}
	}
	close(jobs)
	wg.Wait()
	<-watchDone
	if len(seen) < *n {
		return fmt.Errorf("only %d of %d cores analysed", len(seen), *n)
	}
	elapsed := seen[len(seen)-1].Sub(start)
	sort.Slice(commits, func(i, j int) bool { return commits[i].Before(commits[j]) })
	lat := make([]time.Duration, *n)
	for i := range lat {
		lat[i] = seen[i].Sub(commits[i])
		if lat[i] < 0 {
			lat[i] = 0
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	fmt.Printf("ingest %d cores of %d bytes from %d clients: %.1f s, %.0f cores/s uploaded and analysed; commit->analysed p50 %.0f ms, p99 %.0f ms\n",
		*n, len(core), *clients, elapsed.Seconds(), float64(*n)/elapsed.Seconds(), ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100]))
	return nil
}
