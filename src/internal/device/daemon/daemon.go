// Package daemon is memfaultd's service: it owns core_pattern while data collection is on,
// keeps recent logs for the core handler, serves the local HTTP API, keeps the staging area
// within its limits, and uploads staged entries with back-off.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"meta-memfault-go/internal/device/config"
	"meta-memfault-go/internal/device/logring"
	"meta-memfault-go/internal/device/staging"
	"meta-memfault-go/internal/device/upload"
	"meta-memfault-go/internal/protocol"
)

// Options are what the command line and the environment decide.
type Options struct {
	ConfigPath  string // "" = /etc/memfaultd.conf
	PidFile     string // /run/memfaultd.pid
	ProcRoot    string // /proc
	Root        string // "/" (device identity and log sources)
	HandlerPath string // the memfault-core-handler to install
	Log         *slog.Logger
	// LogSources overrides logring.Detect (tests).
	LogSources []logring.Source
	// Ready is called once the daemon serves (HTTP API up, core_pattern applied); an error
	// stops it. memfaultd writes its pid file here.
	Ready func() error
}

// Daemon is one running memfaultd.
type Daemon struct {
	opts Options
	log  *slog.Logger

	mu  sync.Mutex // guards cfg, dev, client, hook
	cfg *config.Config
	dev config.DeviceInfo

	ring    *logring.Ring
	syncReq chan chan SyncResult
	reload  chan struct{}

	failures    int // consecutive failed syncs
	lastForeign string
	crashes     map[string]int
	http        *http.Server
	httpAddr    string
	export      exportState
}

// SyncResult is the outcome of one upload round.
type SyncResult struct {
	Report upload.Report `json:"report"`
	Error  string        `json:"error,omitempty"`
}

// New loads and validates the configuration; nothing on the system changes before it is valid.
func New(opts Options) (*Daemon, error) {
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.Root == "" {
		opts.Root = "/"
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	cfg, err := config.Load(opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	d := &Daemon{
		opts:    opts,
		log:     opts.Log,
		cfg:     cfg,
		ring:    logring.NewRing(int(max(cfg.Coredump.LogLines, 1))),
		syncReq: make(chan chan SyncResult),
		reload:  make(chan struct{}, 1),
		crashes: map[string]int{},
	}
	return d, nil
}

// Config returns the configuration in force.
func (d *Daemon) Config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

func (d *Daemon) hook(cfg *config.Config) *KernelHook {
	h := KernelHookFor(cfg, d.opts.ConfigPath, d.opts.ProcRoot, d.log)
	if d.opts.HandlerPath != "" {
		h.HandlerPath = d.opts.HandlerPath
	}
	return h
}

// KernelHookFor is the kernel hook that a configuration asks for.
func KernelHookFor(cfg *config.Config, configPath, procRoot string, log *slog.Logger) *KernelHook {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &KernelHook{
		ProcRoot:    procRoot,
		StateDir:    cfg.PersistDir,
		HandlerPath: handlerPath(""),
		ConfigPath:  configPath,
		PipeLimit:   cfg.Coredump.CorePipeLimit,
		Log:         log,
	}
}

// applyKernelHook installs or removes our core_pattern according to the consent setting.
func (d *Daemon) applyKernelHook(cfg *config.Config) {
	h := d.hook(cfg)
	var err error
	if cfg.EnableDataCollection {
		err = h.Install()
	} else {
		err = h.Uninstall()
	}
	if err != nil {
		d.log.Error("core_pattern", "err", err)
	}
}

// checkKernelHook notices, once per change, that someone else replaced our core_pattern.
func (d *Daemon) checkKernelHook(cfg *config.Config) {
	if !cfg.EnableDataCollection {
		return
	}
	ok, cur, err := d.hook(cfg).Check()
	if err != nil || ok {
		d.lastForeign = ""
		return
	}
	if cur != d.lastForeign {
		_, advice, _ := otherHandler(cur)
		d.log.Warn("core_pattern was changed by someone else; memfaultd does not fight over it, crashes are not captured",
			"core_pattern", cur, "what_to_change", advice)
		d.lastForeign = cur
	}
}

func (d *Daemon) loadIdentity(ctx context.Context, cfg *config.Config) {
	dev, err := config.LoadDeviceInfo(ctx, cfg, d.opts.Root, 5*time.Second)
	if err != nil {
		d.log.Warn("device identity incomplete", "err", err)
	}
	d.mu.Lock()
	d.dev = dev
	d.mu.Unlock()
}

func (d *Daemon) client(cfg *config.Config) *upload.Client {
	d.mu.Lock()
	dev := d.dev
	d.mu.Unlock()
	return upload.New(upload.Options{BaseURL: cfg.BaseURL, ProjectKey: cfg.ProjectKey, Device: dev, Logger: d.log})
}

// Run serves until ctx ends. It returns an error only when it cannot start.
func (d *Daemon) Run(ctx context.Context) error {
	cfg := d.Config()
	if err := os.MkdirAll(cfg.PersistDir, 0o755); err != nil {
		return fmt.Errorf("persist_dir: %w", err)
	}
	if err := os.MkdirAll(cfg.TmpDir, 0o755); err != nil {
		return fmt.Errorf("tmp_dir: %w", err)
	}
	if err := d.startHTTP(cfg); err != nil {
		return err
	}
	defer d.stopHTTP()
	d.loadIdentity(ctx, cfg)
	d.applyKernelHook(cfg)

	sources := d.opts.LogSources
	if sources == nil {
		sources = logring.Detect(d.opts.Root)
	}
	logCtx, stopLogs := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); logring.Collect(logCtx, d.ring, sources, d.log) }()
	defer func() { stopLogs(); wg.Wait() }()

	if d.opts.Ready != nil {
		if err := d.opts.Ready(); err != nil {
			return err
		}
	}
	d.log.Info("memfaultd started", "data_collection", cfg.EnableDataCollection, "dev_mode", cfg.EnableDevMode,
		"base_url", cfg.BaseURL, "http", d.httpAddr, "upload_interval_s", cfg.UploadIntervalSeconds)

	maintenance := time.NewTicker(30 * time.Second)
	defer maintenance.Stop()
	timer := time.NewTimer(d.nextSync(cfg))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			d.log.Info("memfaultd stopping")
			return nil
		case <-d.reload:
			d.doReload(ctx)
			cfg = d.Config()
			resetTimer(timer, d.nextSync(cfg))
		case reply := <-d.syncReq:
			res := d.sync(ctx)
			if reply != nil {
				reply <- res
			}
			resetTimer(timer, d.nextSync(d.Config()))
		case <-timer.C:
			d.sync(ctx)
			resetTimer(timer, d.nextSync(d.Config()))
		case <-maintenance.C:
			cfg := d.Config()
			d.clean(cfg)
			d.checkKernelHook(cfg)
		}
	}
}

func resetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
}

const never = 100 * 365 * 24 * time.Hour

// nextSync is when the next automatic upload happens: the interval, or the back-off after
// failures (60 s doubling, capped at the interval). An interval of 0 means only on request.
func (d *Daemon) nextSync(cfg *config.Config) time.Duration {
	interval := time.Duration(cfg.UploadIntervalSeconds) * time.Second
	if interval == 0 {
		return never
	}
	if d.failures > 0 {
		return upload.Backoff(d.failures, interval)
	}
	return interval
}

// Reload asks the loop to re-read the configuration (SIGHUP).
func (d *Daemon) Reload() {
	select {
	case d.reload <- struct{}{}:
	default:
	}
}

// RequestSync asks the loop for an upload round (SIGUSR1) without waiting.
func (d *Daemon) RequestSync() {
	go func() {
		select {
		case d.syncReq <- nil:
		case <-time.After(time.Minute):
		}
	}()
}

// SyncAndWait runs an upload round and returns its result.
func (d *Daemon) SyncAndWait(ctx context.Context) (SyncResult, error) {
	reply := make(chan SyncResult, 1)
	select {
	case d.syncReq <- reply:
	case <-ctx.Done():
		return SyncResult{}, ctx.Err()
	}
	select {
	case r := <-reply:
		return r, nil
	case <-ctx.Done():
		return SyncResult{}, ctx.Err()
	}
}

func (d *Daemon) doReload(ctx context.Context) {
	cfg, err := config.Load(d.opts.ConfigPath)
	if err != nil {
		d.log.Error("reload: configuration refused, keeping the previous one", "err", err)
		return
	}
	old := d.Config()
	d.mu.Lock()
	d.cfg = cfg
	d.mu.Unlock()
	if err := os.MkdirAll(cfg.TmpDir, 0o755); err != nil {
		d.log.Error("tmp_dir", "err", err)
	}
	d.loadIdentity(ctx, cfg)
	d.applyKernelHook(cfg)
	if cfg.HTTPServer.BindAddress != old.HTTPServer.BindAddress {
		d.stopHTTP()
		if err := d.startHTTP(cfg); err != nil {
			d.log.Error("http server", "err", err)
		}
	}
	d.failures = 0
	d.log.Info("configuration reloaded", "data_collection", cfg.EnableDataCollection, "dev_mode", cfg.EnableDevMode)
}

func (d *Daemon) cleanPolicy(cfg *config.Config) staging.CleanPolicy {
	return staging.CleanPolicy{
		MaxUsage:    int64(cfg.TmpDirMaxUsageKiB) << 10,
		MinHeadroom: cfg.TmpDirMinHeadroomKiB << 10,
		MinInodes:   cfg.TmpDirMinInodes,
		MaxAge:      time.Duration(cfg.MAR.MarEntryMaxAgeSeconds) * time.Second,
	}
}

func (d *Daemon) clean(cfg *config.Config) {
	rep, err := staging.ForTmpDir(cfg.TmpDir).Clean(d.cleanPolicy(cfg), time.Now())
	if err != nil {
		d.log.Error("clean staging", "err", err)
		return
	}
	if rep.Abandoned+rep.Expired+rep.Evicted > 0 {
		d.log.Warn("staging cleaned", "abandoned", rep.Abandoned, "expired", rep.Expired, "evicted", rep.Evicted, "freed_bytes", rep.Freed)
	}
}

// DeviceConfigPath is where the fetched device configuration is cached.
func DeviceConfigPath(cfg *config.Config) string {
	return filepath.Join(cfg.PersistDir, "device_config.json")
}

// sync cleans the staging area, refreshes the device configuration, and uploads.
func (d *Daemon) sync(ctx context.Context) SyncResult {
	cfg := d.Config()
	d.clean(cfg)
	if cfg.ProjectKey == "" {
		d.log.Warn("no project_key configured: nothing is uploaded")
		return SyncResult{Error: "no project_key configured"}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	c := d.client(cfg)
	dc, err := c.FetchDeviceConfig(ctx, DeviceConfigPath(cfg))
	if err != nil {
		d.log.Warn("device config not refreshed; using the cached one", "err", err, "resolution", dc.DebuggingResolution)
	}
	allowed := dc.CoredumpsAllowed(cfg.EnableDevMode)
	rep, err := c.UploadStaged(ctx, staging.ForTmpDir(cfg.TmpDir), int64(cfg.MAR.MarFileMaxSizeKiB)<<10,
		func(m *protocol.Manifest) bool { return m.Type != protocol.ManifestTypeCoredump || allowed })
	if err != nil {
		d.failures++
		wait := d.nextSync(cfg)
		d.log.Error("upload failed", "err", err, "uploaded", rep.Uploaded, "consecutive_failures", d.failures, "retry_in", wait)
		return SyncResult{Report: rep, Error: err.Error()}
	}
	d.failures = 0
	if rep.Uploaded+rep.Dropped > 0 {
		d.log.Info("upload done", "entries", rep.Uploaded, "dropped", rep.Dropped, "zips", rep.Zips, "bytes", rep.Bytes)
	}
	return SyncResult{Report: rep}
}

func (d *Daemon) startHTTP(cfg *config.Config) error {
	ln, err := net.Listen("tcp", cfg.HTTPServer.BindAddress)
	if err != nil {
		return fmt.Errorf("http_server.bind_address %s: %w", cfg.HTTPServer.BindAddress, err)
	}
	d.httpAddr = ln.Addr().String()
	d.http = &http.Server{Handler: d.routes(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := d.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("http server", "err", err)
		}
	}()
	return nil
}

func (d *Daemon) stopHTTP() {
	if d.http == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	d.http.Shutdown(ctx)
	d.http = nil
}

func (d *Daemon) stagingDir() staging.Dir { return staging.ForTmpDir(d.Config().TmpDir) }

// HTTPAddr is the address the local API listens on.
func (d *Daemon) HTTPAddr() string { return d.httpAddr }
