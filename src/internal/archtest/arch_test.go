// Package archtest checks the package rules of ARCHITECTURE.md: three wings (device, server,
// symbols) that never import each other, shared packages that import no wing, and a device
// binary free of server-only modules.
package archtest

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const mod = "meta-memfault-go/"

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func list(t *testing.T, args ...string) []pkg {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json"}, args...)...)
	cmd.Dir = filepath.Join("..", "..")
	out, err := cmd.Output()
	require.NoError(t, err)
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else {
			require.NoError(t, err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// wing returns which wing a package of ours belongs to: device, server, symbols, shared, cmd/X.
func wing(path string) string {
	rel := strings.TrimPrefix(path, mod)
	for _, w := range []string{"internal/device/", "internal/server/", "internal/symbols/"} {
		if strings.HasPrefix(rel, w) {
			return strings.TrimSuffix(strings.TrimPrefix(w, "internal/"), "/")
		}
	}
	if strings.HasPrefix(rel, "cmd/") {
		return rel
	}
	return "shared"
}

// allowed says which wings a wing may import.
var allowed = map[string][]string{
	"device":              {"device", "shared"},
	"server":              {"server", "shared"},
	"symbols":             {"symbols", "shared"},
	"shared":              {"shared"},
	"cmd/memfaultd":       {"device", "shared"},
	"cmd/memfault-server": {"server", "shared"},
	"cmd/memfault":        {"symbols", "shared"},
}

func TestWingsImportOnlyWhatTheyMay(t *testing.T) {
	for _, p := range list(t, "./...") {
		from := wing(p.ImportPath)
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, mod) {
				continue
			}
			to := wing(imp)
			ok := false
			for _, a := range allowed[from] {
				ok = ok || a == to
			}
			if strings.HasPrefix(strings.TrimPrefix(imp, mod), "internal/testutil/") {
				ok = true // test helpers; the build rule below keeps them out of binaries
			}
			require.True(t, ok, "%s (%s) must not import %s (%s)", p.ImportPath, from, imp, to)
		}
	}
}

func TestDeviceBinaryIsLean(t *testing.T) {
	ps := list(t, "-deps", "./cmd/memfaultd")
	for _, p := range ps {
		for _, banned := range []string{mod + "internal/server/", mod + "internal/symbols/", mod + "internal/testutil/",
			"modernc.org/sqlite", "github.com/ianlancetaylor/demangle", "github.com/stretchr/testify"} {
			require.False(t, strings.HasPrefix(p.ImportPath, banned), "memfaultd depends on %s", p.ImportPath)
		}
	}
}

func TestSymbolUploaderIsLean(t *testing.T) {
	ps := list(t, "-deps", "./cmd/memfault")
	found := false
	for _, p := range ps {
		found = found || p.ImportPath == mod+"internal/symbols/upload"
		for _, banned := range []string{mod + "internal/server/", mod + "internal/device/", mod + "internal/testutil/",
			"modernc.org/sqlite", "github.com/ianlancetaylor/demangle", "github.com/stretchr/testify"} {
			require.False(t, strings.HasPrefix(p.ImportPath, banned), "memfault depends on %s", p.ImportPath)
		}
	}
	require.True(t, found, "go list found no symbols wing under cmd/memfault")
}
