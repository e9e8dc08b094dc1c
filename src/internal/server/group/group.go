// Package group decides which issue a crash belongs to: a fingerprint from the normalised,
// demangled, parameter-stripped function names of the crashing thread's top in-app frames.
// Raw addresses are never hashed; a frame without a symbol counts as build-id + offset.
package group

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"regexp"
	"strings"
)

// Frame is what grouping needs of one frame of the crashing thread, innermost first.
type Frame struct {
	Function string // demangled; "" when no symbol
	Module   string // path of the mapped file
	BuildID  string
	Offset   uint64 // module-relative address (link-time)
	File     string
	Line     int
}

// Rules say which frames are the application's own.
type Rules struct {
	// NotInAppModules are path globs (path.Match) of system libraries.
	NotInAppModules []string
	// NotInAppFunctions are regular expressions of runtime and error-reporting functions
	// (abort, raise, assert, panic machinery) that say how a program died, not where.
	NotInAppFunctions []string
	// Depth is how many in-app frames make the fingerprint.
	Depth int
}

// DefaultRules treat the C library, the loader, the C++ and unwinder runtimes and the vDSO as
// system code, and abort/raise/assert/terminate and the Rust and Go panic paths as reporting.
func DefaultRules() Rules {
	return Rules{
		NotInAppModules: []string{"/lib/*", "/lib64/*", "/usr/lib/*", "/usr/lib64/*", "/lib/*/*", "/usr/lib/*/*",
			"*/libc.so*", "*/libc-*.so", "*/ld-linux*", "*/libpthread*", "*/libstdc++*", "*/libgcc_s*", "*/libm.so*",
			"*/libdl*", "*/librt*", "linux-vdso.so*", "[vdso]"},
		NotInAppFunctions: []string{
			`^(__GI_)?(raise|abort)$`, `^__pthread_kill`, `^pthread_kill$`, `^__assert_fail`, `^__assert_perror_fail$`,
			`^__libc_message`, `^__fortify_fail`, `^__stack_chk_fail`, `^__chk_fail`,
			`^std::terminate$`, `^std::__terminate`, `^__cxxabiv1::`, `^__cxa_`, `^__gnu_cxx::__verbose_terminate_handler`,
			`^_Unwind_`,
			`^core::panicking::`, `^std::panicking::`, `^std::panic::`, `^core::panic::`, `^rust_panic`, `^__rust_`,
			`^std::rt::`, `^std::sys::`, `^std::process::abort`, `^core::result::unwrap_failed`, `^core::option::`,
			// The Rust panic runtimes, and the Rust and C++ standard libraries inlined into the
			// program (Result::expect, Vec indexing, std::map::at): the caller is where it went wrong.
			`^panic_abort::`, `^panic_unwind::`, `^core::`, `^alloc::`, `^std::`,
			`^runtime\.`, `^runtime/internal/`,
			`^_start$`, `^__libc_start`, `^start_thread$`, `^clone3?$`, `^thread_start$`,
			`^<signal handler called>$`,
		},
		Depth: 4,
	}
}

// Grouper applies compiled rules.
type Grouper struct {
	modules []string
	funcs   []*regexp.Regexp
	depth   int
}

// New compiles rules.
func New(r Rules) (*Grouper, error) {
	g := &Grouper{modules: r.NotInAppModules, depth: r.Depth}
	if g.depth <= 0 {
		g.depth = 4
	}
	for _, m := range r.NotInAppModules {
		if _, err := path.Match(m, ""); err != nil {
			return nil, fmt.Errorf("not-in-app module pattern %q: %w", m, err)
		}
	}
	for _, f := range r.NotInAppFunctions {
		re, err := regexp.Compile(f)
		if err != nil {
			return nil, fmt.Errorf("not-in-app function pattern %q: %w", f, err)
		}
		g.funcs = append(g.funcs, re)
	}
	return g, nil
}

// InApp reports whether a frame is the application's own code.
func (g *Grouper) InApp(f Frame) bool {
	for _, m := range g.modules {
		if ok, _ := path.Match(m, f.Module); ok {
			return false
		}
	}
	name := Normalize(f.Function)
	for _, re := range g.funcs {
		if re.MatchString(name) {
			return false
		}
	}
	return true
}

var rustHash = regexp.MustCompile(`::h[0-9a-f]{16}$`)

// Normalize strips what varies between builds of the same code: parameter lists (and
// qualifiers after them), Rust symbol hashes, GCC clone suffixes (.constprop.0, .isra.0, .cold).
func Normalize(name string) string {
	name = strings.TrimSpace(name)
	if i := strings.IndexByte(name, '.'); i > 0 && !strings.Contains(name[:i], "::") && !strings.Contains(name, "/") {
		// C function clones: foo.constprop.0, foo.part.1, foo.cold (not Go's pkg.Func).
		for _, suffix := range []string{".constprop", ".isra", ".part", ".cold", ".lto_priv"} {
			if j := strings.Index(name, suffix); j > 0 {
				name = name[:j]
			}
		}
	}
	name = rustHash.ReplaceAllString(name, "")
	// Drop the parameter list (and the qualifiers after it), keeping template arguments,
	// "(anonymous namespace)" and the name of operator().
	base := name
	for changed := true; changed; {
		changed = false
		for _, q := range []string{" const", " volatile", " &&", " &", " noexcept"} {
			if strings.HasSuffix(base, q) {
				base, changed = strings.TrimSuffix(base, q), true
			}
		}
	}
	if !strings.HasSuffix(base, ")") {
		return name
	}
	depth := 0
	for i := len(base) - 1; i >= 0; i-- {
		switch base[i] {
		case ')':
			depth++
		case '(':
			depth--
			if depth == 0 {
				prefix := strings.TrimSpace(base[:i])
				if prefix == "" || strings.HasSuffix(prefix, "operator") {
					return name
				}
				return prefix
			}
		}
	}
	return name
}

// Key is how one frame enters the fingerprint.
func Key(f Frame) string {
	if f.Function != "" {
		return Normalize(f.Function)
	}
	id := f.BuildID
	if id == "" {
		id = path.Base(f.Module)
	}
	return fmt.Sprintf("%s+%#x", id, f.Offset)
}

// Fingerprint of a crashing thread, and the indexes of the frames that made it.
type Fingerprint struct {
	Hash   string
	Frames []int
	Keys   []string
}

// Fingerprint takes the top in-app frames (falling back to the top frames when none is in-app)
// of a signal's crashing thread.
func (g *Grouper) Fingerprint(signal string, frames []Frame) Fingerprint {
	var fp Fingerprint
	for i, f := range frames {
		if len(fp.Frames) == g.depth {
			break
		}
		if g.InApp(f) {
			fp.Frames = append(fp.Frames, i)
		}
	}
	if len(fp.Frames) == 0 {
		for i := range frames {
			if i == g.depth {
				break
			}
			fp.Frames = append(fp.Frames, i)
		}
	}
	h := sha256.New()
	fmt.Fprintf(h, "v1\n%s\n", signal)
	for _, i := range fp.Frames {
		k := Key(frames[i])
		fp.Keys = append(fp.Keys, k)
		fmt.Fprintf(h, "%s\n", k)
	}
	fp.Hash = hex.EncodeToString(h.Sum(nil))[:32]
	return fp
}
