// Command demo is scripts/demo.sh's helper; it is not installed anywhere. It reads only
// memfault-server's JSON API (it imports no package of the server), as any script could:
//
//	demo freeport                              print a free TCP port on 127.0.0.1
//	demo receive --listen ADDR --secret S      a webhook receiver: one line per call on stdout
//	                                           (event, issue, title, whether the HMAC matched)
//	demo report --url URL --cores N [--timeout 90s] [--webhook-log FILE]
//	                                           wait until the server has analysed N cores, then
//	                                           print every issue with the crashing thread's
//	                                           symbolicated backtrace and the issue's page, and
//	                                           the webhook calls the receiver logged (one
//	                                           issue.new per issue is awaited)
//
// report exits 1 when the cores are not analysed in time or an analysis failed.
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: demo freeport | demo report --url URL --cores N [--timeout D]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "freeport":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, "demo freeport:", err)
			os.Exit(1)
		}
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
	case "receive":
		os.Exit(receive(os.Args[2:]))
	case "report":
		os.Exit(report(os.Args[2:], os.Stdout))
	default:
		fmt.Fprintf(os.Stderr, "demo: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

type frame struct {
	Function string `json:"function"`
	Module   string `json:"module"`
	Offset   string `json:"offset"`
	File     string `json:"file"`
	Line     int    `json:"line"`
	Inlined  bool   `json:"inlined"`
	Method   string `json:"method"`
	Symbols  string `json:"symbols"`
	InApp    bool   `json:"in_app"`
}

type issue struct {
	ID               int64    `json:"id"`
	Title            string   `json:"title"`
	Occurrences      int      `json:"occurrences"`
	Devices          int      `json:"devices"`
	SoftwareVersions []string `json:"software_versions"`
	SymbolsMissing   bool     `json:"symbols_missing"`
}

type issueDetail struct {
	Issue  issue `json:"issue"`
	Latest struct {
		SoftwareType    string `json:"software_type"`
		SoftwareVersion string `json:"software_version"`
		Trace           struct {
			Signal         string   `json:"signal"`
			FaultAddress   string   `json:"fault_address"`
			CrashingThread int      `json:"crashing_thread"`
			Process        string   `json:"process"`
			Cmdline        []string `json:"cmdline"`
			Fingerprint    []int    `json:"fingerprint_frames"`
			Threads        []struct {
				TID     int     `json:"tid"`
				Crashed bool    `json:"crashed"`
				Frames  []frame `json:"frames"`
			} `json:"threads"`
			MissingSymbols []string `json:"missing_symbols"`
		} `json:"trace"`
	} `json:"latest"`
}

var client = &http.Client{Timeout: 10 * time.Second}

func get(url string, v any) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func report(args []string, out io.Writer) int {
	fs := flag.NewFlagSet("demo report", flag.ContinueOnError)
	base := fs.String("url", "", "memfault-server URL")
	cores := fs.Int("cores", 1, "cores to wait for")
	timeout := fs.Duration("timeout", 90*time.Second, "how long to wait for the analyses")
	webhookLog := fs.String("webhook-log", "", "file of `demo receive` to show")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	*base = strings.TrimSuffix(*base, "/")
	deadline := time.Now().Add(*timeout)
	var status struct {
		Cores map[string]int `json:"cores"`
	}
	for {
		status.Cores = nil // Decode merges into a map it is given
		err := get(*base+"/api/v1/status", &status)
		c := status.Cores
		if err == nil && c["done"]+c["failed"] >= *cores && c["pending"]+c["running"] == 0 {
			break
		}
		if time.Now().After(deadline) {
			if err != nil {
				fmt.Fprintf(out, "demo: the server did not answer within %v: %v\n", *timeout, err)
			} else {
				fmt.Fprintf(out, "demo: after %v the server has %d of %d cores analysed (%v); see the server log\n",
					*timeout, c["done"]+c["failed"], *cores, c)
			}
			return 1
		}
		time.Sleep(200 * time.Millisecond)
	}
	var list struct {
		Issues []issue `json:"issues"`
	}
	if err := get(*base+"/api/v1/issues?sort=first_seen", &list); err != nil {
		fmt.Fprintln(out, "demo:", err)
		return 1
	}
	sort.Slice(list.Issues, func(i, j int) bool { return list.Issues[i].ID < list.Issues[j].ID })
	fmt.Fprintf(out, "%d cores analysed, %d issues\n", status.Cores["done"], len(list.Issues))
	for _, is := range list.Issues {
		var d issueDetail
		if err := get(fmt.Sprintf("%s/api/v1/issues/%d", *base, is.ID), &d); err != nil {
			fmt.Fprintln(out, "demo:", err)
			return 1
		}
		printIssue(out, *base, d)
	}
	if *webhookLog != "" {
		showWebhooks(out, *webhookLog, len(list.Issues))
	}
	if n := status.Cores["failed"]; n > 0 {
		fmt.Fprintf(out, "\ndemo: %d cores could not be analysed; see the server log\n", n)
		return 1
	}
	return 0
}

// rustcPrefix is where Rust's standard library says its sources are: /rustc/<commit>/.
var rustcPrefix = regexp.MustCompile(`^/rustc/[0-9a-f]{40}/`)

func printIssue(out io.Writer, base string, d issueDetail) {
	tr := d.Latest.Trace
	fmt.Fprintf(out, "\nIssue %d: %s\n", d.Issue.ID, d.Issue.Title)
	fmt.Fprintf(out, "  page:     %s/issues/%d\n", base, d.Issue.ID)
	fmt.Fprintf(out, "  program:  %s   software: %s %s   occurrences: %d\n", strings.Join(tr.Cmdline, " "),
		d.Latest.SoftwareType, d.Latest.SoftwareVersion, d.Issue.Occurrences)
	if tr.FaultAddress != "" {
		fmt.Fprintf(out, "  signal:   %s at %s\n", tr.Signal, tr.FaultAddress)
	} else {
		fmt.Fprintf(out, "  signal:   %s\n", tr.Signal)
	}
	if len(tr.MissingSymbols) > 0 {
		fmt.Fprintf(out, "  symbols missing for build-ids %s\n", strings.Join(tr.MissingSymbols, ", "))
	}
	fp := map[int]bool{}
	for _, i := range tr.Fingerprint {
		fp[i] = true
	}
	for _, th := range tr.Threads {
		if !th.Crashed {
			continue
		}
		fmt.Fprintf(out, "  crashing thread %d (* = frames that make the fingerprint):\n", th.TID)
		for i, f := range th.Frames {
			mark := " "
			if fp[i] {
				mark = "*"
			}
			name := f.Function
			if name == "" {
				name = "?? " + filepath.Base(f.Module) + "+" + f.Offset
			}
			if f.Inlined {
				name += " [inlined]"
			}
			where := filepath.Base(f.Module)
			if f.File != "" && f.Line > 0 {
				where = fmt.Sprintf("%s:%d", rustcPrefix.ReplaceAllString(f.File, "<rustc>/"), f.Line)
			}
			fmt.Fprintf(out, "   %s#%-2d %-44s %s\n", mark, i, name, where)
		}
	}
}

// receive serves webhook calls and prints one line per call.
func receive(args []string) int {
	fs := flag.NewFlagSet("demo receive", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address")
	secret := fs.String("secret", "", "HMAC secret the server signs with")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	err := http.ListenAndServe(*listen, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var p struct {
			Event           string `json:"event"`
			IssueID         int64  `json:"issue_id"`
			Title           string `json:"title"`
			SoftwareVersion string `json:"software_version"`
			URL             string `json:"url"`
		}
		if err := json.Unmarshal(body, &p); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		m := hmac.New(sha256.New, []byte(*secret))
		m.Write(body)
		sig := "signature ok"
		if r.Header.Get("X-Memfault-Signature-256") != "sha256="+hex.EncodeToString(m.Sum(nil)) {
			sig = "SIGNATURE MISMATCH"
		}
		fmt.Printf("%s  issue %d  %q  version %s  %s  (%s)\n", p.Event, p.IssueID, p.Title, p.SoftwareVersion, p.URL, sig)
	}))
	fmt.Fprintln(os.Stderr, "demo receive:", err)
	return 1
}

// showWebhooks prints the receiver's log once it has a call per issue (10 s at most).
func showWebhooks(out io.Writer, path string, issues int) {
	var lines []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		b, _ := os.ReadFile(path)
		lines = strings.FieldsFunc(string(b), func(r rune) bool { return r == '\n' })
		if len(lines) >= issues || time.Now().After(deadline) {
			break
		}
	}
	fmt.Fprintf(out, "\nWebhook calls received (memfault-server --webhook to the demo's receiver): %d\n", len(lines))
	for _, l := range lines {
		fmt.Fprintf(out, "  %s\n", l)
	}
}
