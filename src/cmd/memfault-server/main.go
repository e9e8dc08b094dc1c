// memfault-server is a self-hosted endpoint for memfaultd devices and the memfault symbol
// uploader: it ingests MAR uploads and symbol files, unwinds and symbolizes every core, groups
// crashes into issues, and serves them as JSON and as web pages (/issues, /symbols).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"meta-memfault-go/internal/server/group"
	"meta-memfault-go/internal/server/ingest"
	"meta-memfault-go/internal/server/notify"
	"meta-memfault-go/internal/server/store"
	"meta-memfault-go/internal/server/symstore"
	"meta-memfault-go/internal/server/ui"
	"meta-memfault-go/internal/server/worker"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("memfault-server", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "address to serve on")
	data := fs.String("data", "memfault-server-data", "state directory (SQLite database and blobs)")
	cfg := ingest.DefaultConfig()
	fs.StringVar(&cfg.ProjectKey, "project-key", os.Getenv("MEMFAULT_PROJECT_KEY"), "project key devices send (env MEMFAULT_PROJECT_KEY)")
	fs.StringVar(&cfg.Org, "org", "org", "organization slug of the symbols API")
	fs.StringVar(&cfg.Project, "project", "project", "project slug of the symbols API")
	fs.StringVar(&cfg.OrgToken, "org-token", os.Getenv("MEMFAULT_ORG_TOKEN"), "organization auth token for symbol uploads (env MEMFAULT_ORG_TOKEN)")
	fs.StringVar(&cfg.PublicURL, "public-url", "", "URL devices and CI use to reach this server (default http://<listen>)")
	fs.Int64Var(&cfg.MaxUpload, "max-upload", cfg.MaxUpload, "largest upload accepted, bytes")
	fs.StringVar(&cfg.Resolution, "sampling", "normal", "debugging resolution handed to devices: off, low, normal, high")
	var symbolsDirs multi
	fs.Var(&symbolsDirs, "symbols-dir", "index ELF files under this directory by build-id (repeatable)")
	wcfg := worker.Config{}
	// Analysis waits on the database and the disk as much as it computes: twice the CPUs.
	fs.IntVar(&wcfg.Workers, "workers", max(8, 2*runtime.NumCPU()), "cores analysed at once")
	fs.DurationVar(&wcfg.JobTimeout, "job-timeout", 60*time.Second, "time budget of one core's analysis")
	fs.Int64Var(&wcfg.MaxCoreSize, "max-core-size", 1<<30, "largest uncompressed core analysed, bytes")
	fs.IntVar(&wcfg.Limits.MaxThreads, "max-threads", worker.DefaultLimits.MaxThreads, "threads unwound per core")
	fs.IntVar(&wcfg.Limits.MaxFrames, "max-frames", worker.DefaultLimits.MaxFrames, "frames unwound per core, all threads together")
	var webhooks multi
	fs.Var(&webhooks, "webhook", "POST issue.new and issue.regression events to this URL (repeatable)")
	webhookSecret := fs.String("webhook-secret", os.Getenv("MEMFAULT_WEBHOOK_SECRET"), "sign --webhook calls with HMAC-SHA256 under this secret (env MEMFAULT_WEBHOOK_SECRET)")
	webhookConfig := fs.String("webhook-config", "", `JSON file of webhooks: {"webhooks": [{"url": "...", "secret": "..."}]}`)
	ncfg := notify.Config{}
	fs.DurationVar(&ncfg.RetryWaitMin, "webhook-retry-wait", time.Second, "first wait before retrying a failed webhook call (doubles, up to 30 s)")
	verbose := fs.Bool("v", false, "debug logs")
	debugListen := fs.String("debug-listen", "", "serve Go profiles (/debug/pprof/) on this address, e.g. 127.0.0.1:6060 (off by default)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	worker.TuneGC()
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if cfg.ProjectKey == "" {
		fmt.Fprintln(os.Stderr, "memfault-server: --project-key (or MEMFAULT_PROJECT_KEY) is required")
		return 2
	}
	switch cfg.Resolution {
	case "off", "low", "normal", "high":
	default:
		fmt.Fprintf(os.Stderr, "memfault-server: --sampling %q: want off, low, normal or high\n", cfg.Resolution)
		return 2
	}

	for _, u := range webhooks {
		if err := notify.CheckURL(u); err != nil {
			fmt.Fprintf(os.Stderr, "memfault-server: --webhook: %v\n", err)
			return 2
		}
		ncfg.Hooks = append(ncfg.Hooks, notify.Hook{URL: u, Secret: *webhookSecret})
	}
	if *webhookConfig != "" {
		b, err := os.ReadFile(*webhookConfig)
		if err == nil {
			var hooks []notify.Hook
			hooks, err = notify.ParseHooks(b)
			ncfg.Hooks = append(ncfg.Hooks, hooks...)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "memfault-server: --webhook-config %s: %v\n", *webhookConfig, err)
			return 2
		}
	}

	st, err := store.Open(*data)
	if err != nil {
		fmt.Fprintf(os.Stderr, "memfault-server: %v\n", err)
		return 1
	}
	defer st.Close()
	syms, err := symstore.New(st, symbolsDirs, log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "memfault-server: %v\n", err)
		return 1
	}
	g, err := group.New(group.DefaultRules())
	if err != nil {
		fmt.Fprintf(os.Stderr, "memfault-server: %v\n", err)
		return 1
	}
	w := worker.New(wcfg, st, syms, g, log)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "memfault-server: %v\n", err)
		return 1
	}
	if cfg.PublicURL == "" {
		cfg.PublicURL = "http://" + ln.Addr().String()
	}
	mux := http.NewServeMux()
	ingest.New(cfg, st, ingest.Hooks{
		CoreStored:   func(int64) { w.Wake() },
		SymbolsAdded: func(id string) { syms.Forget(id); w.Requeued() },
	}, log).Register(mux)
	ui.NewAPI(st, log).Register(mux)
	pages, err := ui.NewPages(st, syms, log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "memfault-server: %v\n", err)
		return 1
	}
	pages.Register(mux)
	ncfg.PublicURL = cfg.PublicURL
	n := notify.New(ncfg, st, log)
	n.Register(mux)

	if *debugListen != "" {
		dln, err := net.Listen("tcp", *debugListen)
		if err != nil {
			fmt.Fprintf(os.Stderr, "memfault-server: --debug-listen: %v\n", err)
			return 1
		}
		dmux := http.NewServeMux()
		dmux.HandleFunc("/debug/pprof/", pprof.Index)
		dmux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		dmux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		dmux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		// Blocking and lock contention are sampled too (/debug/pprof/block, /mutex): where
		// requests wait matters as much as where they compute.
		runtime.SetBlockProfileRate(int(100 * time.Microsecond))
		runtime.SetMutexProfileFraction(10)
		go http.Serve(dln, dmux)
		log.Info("profiles served", "url", "http://"+dln.Addr().String()+"/debug/pprof/")
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	w.Done = func(worker.Event) { n.Wake() }
	notified := make(chan struct{})
	go func() { n.Run(ctx); close(notified) }()
	defer func() { stop(); <-notified }() // the calls in flight finish or are cut off (and sent again after a restart)
	go w.Run(ctx)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	fmt.Printf("memfault-server listening on %s (data in %s)\n", cfg.PublicURL, *data)
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(os.Stderr, "memfault-server: %v\n", err)
		return 1
	}
	return 0
}
