// Command benchtool measures memfault-server for bench/server.sh (a benchmark tool, not a
// product):
//
//	benchtool analyze -core FILE -symbols-dir DIR... -n N
//	    unwind+symbolize one uncompressed core N times: cold (a new symbol store each time)
//	    and warm (one store); prints milliseconds per core
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
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
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
	n := fs.Int("n", 20, "iterations")
	var dirs multi
	fs.Var(&dirs, "symbols-dir", "symbol directory (repeatable)")
	prof := fs.String("cpuprofile", "", "write a CPU profile of the warm runs")
	fs.Parse(args)
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
	run := func(fresh bool) (time.Duration, int, error) {
		var total time.Duration
		frames := 0
		for i := 0; i < *n; i++ {
			s := syms
			if fresh {
				s = syms.Fresh() // same index, empty cache of parsed files
			}
			start := time.Now()
			a, err := worker.AnalyzeCore(context.Background(), f, info.Size(), meta, s, g, worker.Limits{})
			total += time.Since(start)
			if err != nil {
				return 0, 0, err
			}
			frames = 0
			for _, t := range a.Trace.Threads {
				frames += len(t.Frames)
			}
		}
		return total / time.Duration(*n), frames, nil
	}
	cold, frames, err := run(true)
	if err != nil {
		return err
	}
	if *prof != "" {
		pf, err := os.Create(*prof)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(pf)
		defer pprof.StopCPUProfile()
	}
	// One untimed run fills the cache: the warm figure is a core whose modules' symbols are
	// already parsed.
	if _, err := worker.AnalyzeCore(context.Background(), f, info.Size(), meta, syms, g, worker.Limits{}); err != nil {
		return err
	}
	warm, _, err := run(false)
	if err != nil {
		return err
	}
	fmt.Printf("analyze %s: %d frames; cold %.2f ms, warm %.2f ms per core\n", *corePath, frames, ms(cold), ms(warm))
	return nil
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
