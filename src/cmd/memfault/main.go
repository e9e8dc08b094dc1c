// memfault uploads the symbols of a Linux build, by GNU build-id, to memfault-server or to
// Memfault's cloud: the same command line as Memfault's CLI for upload-yocto-symbols and
// upload-elf-symbols. It sends only what the server lacks, and reports every ELF file of the
// image that will give unreadable crashes (no build-id, no debug information).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"meta-memfault-go/internal/symbols/debugpkg"
	"meta-memfault-go/internal/symbols/upload"
	"meta-memfault-go/internal/version"
)

const (
	cmdYocto = "upload-yocto-symbols"
	cmdELF   = "upload-elf-symbols"

	defaultURL = "https://api.memfault.com"
)

const usageText = `Usage: memfault [global options] <command> [options]

Uploads the symbol files of a Linux build to memfault-server or to Memfault's cloud,
matched to crashes by GNU build-id. Only the build-ids the server lacks are sent.

Commands:
  upload-yocto-symbols   the rootfs tarball Yocto deploys and its -dbg tarball
                         (IMAGE_GEN_DEBUGFS); each binary is recombined with its debug file
    -i, --image ROOTFS                  rootfs tarball (.tar, .tar.gz, .tar.bz2, .tar.xz, ...)
    -d, --dbg-image ROOTFS-dbg          its -dbg tarball
    --eu-unstrip-path PATH              eu-unstrip to use (default: from PATH)
    --package-debug-split-style STYLE   debug, debug-with-srcpkg, debug-without-src or
                                        debug-file-directory (default: detected)
  upload-elf-symbols     a tarball of ELF files that carry their debug information
    -a, --archive ARCHIVE

Options of both commands:
  --concurrency N     files uploaded at once (default 8)
  --dry-run           list what would be sent (after asking the server, when credentials
                      are given); nothing is uploaded
  --report FILE       write a JSON report: every ELF file, its build-id and debug
                      information, whether the server has it, and the files whose crashes
                      will be unreadable
  --retry-max N       retries of one request after a network error or a 5xx answer (default 4)
  --retry-wait D      first wait before a retry, doubling (default 1s)
  --cache-dir DIR     where an index of each image tarball read is kept (its ELF files,
                      build-ids, skipped files), by the SHA-256 of its bytes: a re-run of
                      the same tarball whose build-ids the server all has hashes it and
                      decompresses nothing (env MEMFAULT_CACHE_DIR; default
                      $XDG_CACHE_HOME/memfault, else ~/.cache/memfault)
  --no-cache          neither use nor fill the cache (env MEMFAULT_NO_CACHE=1)

Global options (before the command, or after it):
  --org SLUG          organization (env MEMFAULT_ORG)
  --project SLUG      project (env MEMFAULT_PROJECT)
  --org-token TOKEN   organization auth token (env MEMFAULT_ORG_TOKEN)
  --url BASE          API base URL (env MEMFAULT_URL; default https://api.memfault.com)
  --email EMAIL, --password PASSWORD
                      an account instead of an organization token
  --project-key KEY   accepted for compatibility; symbol uploads do not use it
  --verbose           say more
  --version           print the version and exit

Temporary files go under $TMPDIR. Exit status: 0 done, 1 failed, 2 usage error.
`

func main() {
	os.Exit(run(os.Args[1:]))
}

// globals are Memfault's root options.
type globals struct {
	org, project, orgToken, url string
	email, password, projectKey string
	verbose, version            bool
}

func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.org, "org", g.org, "")
	fs.StringVar(&g.project, "project", g.project, "")
	fs.StringVar(&g.orgToken, "org-token", g.orgToken, "")
	fs.StringVar(&g.url, "url", g.url, "")
	fs.StringVar(&g.email, "email", g.email, "")
	fs.StringVar(&g.password, "password", g.password, "")
	fs.StringVar(&g.projectKey, "project-key", g.projectKey, "")
	fs.BoolVar(&g.verbose, "verbose", g.verbose, "")
	fs.BoolVar(&g.version, "version", g.version, "")
}

// options are the commands' own.
type options struct {
	image, dbgImage, archive string
	euUnstrip, splitStyle    string
	concurrency              int
	dryRun                   bool
	report                   string
	retryMax                 int
	retryWait                time.Duration
	cacheDir                 string
	noCache                  bool
}

func usageError(format string, args ...any) int {
	fmt.Fprintln(os.Stderr, "memfault: "+upload.Printable(fmt.Sprintf(format, args...)))
	fmt.Fprintln(os.Stderr, "Run 'memfault --help' for usage.")
	return 2
}

func run(args []string) int {
	g := &globals{
		org:      os.Getenv("MEMFAULT_ORG"),
		project:  os.Getenv("MEMFAULT_PROJECT"),
		orgToken: os.Getenv("MEMFAULT_ORG_TOKEN"),
		url:      os.Getenv("MEMFAULT_URL"),
	}
	if g.url == "" {
		g.url = defaultURL
	}
	top := flag.NewFlagSet("memfault", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	g.register(top)
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Print(usageText)
			return 0
		}
		return usageError("%v", err)
	}
	if g.version {
		printVersion()
		return 0
	}
	rest := top.Args()
	if len(rest) == 0 {
		fmt.Fprint(os.Stderr, usageText)
		return 2
	}
	cmd := rest[0]
	switch cmd {
	case cmdYocto, cmdELF:
	case "help":
		fmt.Print(usageText)
		return 0
	default:
		return usageError("unknown command %q (this memfault knows %s and %s)", upload.Printable(cmd), cmdYocto, cmdELF)
	}

	o := &options{}
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	g.register(fs) // Memfault's root options are accepted after the command too
	if cmd == cmdYocto {
		for _, n := range []string{"image", "i"} {
			fs.StringVar(&o.image, n, "", "")
		}
		for _, n := range []string{"dbg-image", "d"} {
			fs.StringVar(&o.dbgImage, n, "", "")
		}
		fs.StringVar(&o.euUnstrip, "eu-unstrip-path", "", "")
		fs.StringVar(&o.splitStyle, "package-debug-split-style", "", "")
	} else {
		for _, n := range []string{"archive", "a"} {
			fs.StringVar(&o.archive, n, "", "")
		}
	}
	fs.IntVar(&o.concurrency, "concurrency", 8, "")
	fs.BoolVar(&o.dryRun, "dry-run", false, "")
	fs.StringVar(&o.report, "report", "", "")
	fs.IntVar(&o.retryMax, "retry-max", 4, "")
	fs.DurationVar(&o.retryWait, "retry-wait", time.Second, "")
	fs.StringVar(&o.cacheDir, "cache-dir", os.Getenv("MEMFAULT_CACHE_DIR"), "")
	noCache := false
	if v := os.Getenv("MEMFAULT_NO_CACHE"); v != "" {
		var err error
		if noCache, err = strconv.ParseBool(v); err != nil {
			return usageError("%s: MEMFAULT_NO_CACHE=%q: want 1 or 0", cmd, upload.Printable(v))
		}
	}
	fs.BoolVar(&o.noCache, "no-cache", noCache, "")
	if err := fs.Parse(rest[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Print(usageText)
			return 0
		}
		return usageError("%s: %v", cmd, err)
	}
	if g.version {
		printVersion()
		return 0
	}
	if fs.NArg() > 0 {
		return usageError("%s: unexpected argument %q", cmd, upload.Printable(fs.Arg(0)))
	}
	if code := check(cmd, g, o); code != 0 {
		return code
	}
	return execute(cmd, g, o)
}

func printVersion() {
	fmt.Printf("memfault version %s (git %s, build-id %s)\n", version.Version, version.GitCommit, version.BuildID())
}

var splitStyles = []string{"debug", "debug-with-srcpkg", "debug-without-src", "debug-file-directory"}

// check validates the command line; it returns 2 (printed) or 0.
func check(cmd string, g *globals, o *options) int {
	if cmd == cmdYocto {
		if o.image == "" {
			return usageError("%s: --image is required", cmd)
		}
		if o.dbgImage == "" {
			return usageError("%s: --dbg-image is required", cmd)
		}
		if o.splitStyle != "" {
			ok := false
			for _, s := range splitStyles {
				ok = ok || s == o.splitStyle
			}
			if !ok {
				return usageError("%s: --package-debug-split-style %q: want one of %s", cmd, upload.Printable(o.splitStyle), strings.Join(splitStyles, ", "))
			}
		}
	} else if o.archive == "" {
		return usageError("%s: --archive is required", cmd)
	}
	if o.concurrency < 1 || o.concurrency > 256 {
		return usageError("%s: --concurrency %d: want 1 to 256", cmd, o.concurrency)
	}
	if o.retryMax < 0 || o.retryWait <= 0 {
		return usageError("%s: --retry-max must be >= 0 and --retry-wait > 0", cmd)
	}
	if !o.dryRun {
		var missing []string
		if g.org == "" {
			missing = append(missing, "--org (or MEMFAULT_ORG)")
		}
		if g.project == "" {
			missing = append(missing, "--project (or MEMFAULT_PROJECT)")
		}
		if g.orgToken == "" && g.password == "" {
			missing = append(missing, "--org-token (or MEMFAULT_ORG_TOKEN)")
		}
		if len(missing) > 0 {
			return usageError("%s: missing %s", cmd, strings.Join(missing, ", "))
		}
	}
	return 0
}

// hasCredentials says whether the server can be asked.
func (g *globals) hasCredentials() bool {
	return g.org != "" && g.project != "" && (g.orgToken != "" || g.password != "")
}

func execute(cmd string, g *globals, o *options) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "memfault: %s: %s\n", cmd, upload.Printable(err.Error()))
		return 1
	}
	logf := func(format string, args ...any) {
		if g.verbose {
			fmt.Fprintln(os.Stderr, "memfault: "+upload.Printable(fmt.Sprintf(format, args...)))
		}
	}
	if g.projectKey != "" {
		logf("--project-key is not used by symbol uploads")
	}

	prog := upload.NewProgress(os.Stderr)
	var client *upload.Client
	if g.hasCredentials() {
		var err error
		client, err = upload.New(upload.Config{
			BaseURL: g.url, Org: g.org, Project: g.project, OrgToken: g.orgToken,
			Email: g.email, Password: g.password,
			Concurrency: o.concurrency, Progress: prog, RetryMax: o.retryMax, RetryWait: o.retryWait,
		})
		if err != nil {
			return usageError("%s: %v", cmd, err)
		}
	}

	tmp, err := os.MkdirTemp("", "memfault-symbols-")
	if err != nil {
		return fail(fmt.Errorf("temporary directory (TMPDIR): %w", err))
	}
	defer os.RemoveAll(tmp)
	logf("working directory %s", tmp)
	opt := debugpkg.Options{TmpDir: tmp, EuUnstrip: o.euUnstrip, SplitStyle: o.splitStyle, Concurrency: o.concurrency, Log: logf,
		CacheDir: cacheDir(o, logf)}
	// The server is asked as soon as the image's build-ids are known, so that nothing it has is
	// recombined, and a re-run does not read the -dbg image at all.
	var (
		have       map[string]bool // nil: the server was not asked
		presentErr error
		asked      bool
	)
	if client != nil {
		opt.Present = func(ctx context.Context, ids []string) map[string]bool {
			asked = true
			have, presentErr = client.Present(ctx, ids)
			return have
		}
	}
	var res *debugpkg.Result
	if cmd == cmdYocto {
		res, err = debugpkg.FromYocto(ctx, o.image, o.dbgImage, opt)
	} else {
		res, err = debugpkg.FromArchive(ctx, o.archive, opt)
	}
	if err != nil {
		return fail(err)
	}
	logf("%d ELF files, %d symbol files, %d skipped", len(res.ELFs), len(res.Symbols), len(res.Skipped))

	rep := newReport(cmd, g, o, res)
	code := 0
	if client != nil {
		if !asked { // no ELF file with a build-id
			have, presentErr = client.Present(ctx, rep.buildIDs())
		}
		switch err := presentErr; {
		case errors.Is(err, upload.ErrNoPresentCheck):
			prog.Note("the server has no present check (Memfault's cloud has none): sending every file")
		case err != nil:
			rep.Error = err.Error()
			code = fail(err)
			explain(err)
		default:
			rep.Server.PresentCheck = true
		}
	}
	if code == 0 && o.dryRun {
		rep.dryRun(have)
	} else if code == 0 {
		sum := client.UploadMissing(ctx, res.Symbols, have)
		rep.uploaded(have, sum)
		if sum.Err != nil {
			code = fail(sum.Err)
			explain(sum.Err)
		} else if !sum.OK() {
			code = 1
		}
	}
	rep.finish()
	rep.print(os.Stdout)
	if o.report != "" {
		if err := writeJSON(o.report, rep); err != nil {
			return fail(fmt.Errorf("report: %w", err))
		}
	}
	return code
}

// cacheDir is the directory of the image index cache: --cache-dir (MEMFAULT_CACHE_DIR), else
// memfault under the user's cache directory; "" (no cache) with --no-cache or when there is no
// such directory.
func cacheDir(o *options, logf func(string, ...any)) string {
	if o.noCache {
		return ""
	}
	if o.cacheDir != "" {
		return o.cacheDir
	}
	d, err := os.UserCacheDir()
	if err != nil {
		logf("no image index cache: %v", err)
		return ""
	}
	return filepath.Join(d, "memfault")
}

// explain adds a hint for the answers a user can fix.
func explain(err error) {
	var he *upload.HTTPError
	if !errors.As(err, &he) {
		return
	}
	switch he.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		fmt.Fprintln(os.Stderr, "memfault: the server refused the credentials: check --org-token (MEMFAULT_ORG_TOKEN)")
	case http.StatusNotFound:
		fmt.Fprintln(os.Stderr, "memfault: the server does not know this organization/project: check --org, --project and --url")
	}
}

// writeJSON writes v to path whole or not at all: a temporary file in the same directory,
// synced, then renamed.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	return err
}
