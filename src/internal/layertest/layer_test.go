// Package layertest checks the BitBake layer at the root of the repository without BitBake:
// the kas files against kas's JSON schema, the files the recipes install, the MEMFAULT_*
// variables README.md documents, the generated Go module lists, and the Go build the recipes
// perform (same flags, offline from the listed modules, for arm64 and arm).
package layertest

import (
	"archive/zip"
	"bufio"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// root is the repository root, which is the layer.
var root = filepath.Join("..", "..", "..")

func read(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	require.NoError(t, err)
	return string(b)
}

// layerFiles lists the layer's metadata files with one of the suffixes, relative to root.
func layerFiles(t *testing.T, suffixes ...string) []string {
	t.Helper()
	var out []string
	for _, top := range []string{"classes", "conf", "recipes-core", "recipes-kernel", "recipes-support", "dynamic-layers"} {
		err := filepath.Walk(filepath.Join(root, top), func(p string, info os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			for _, s := range suffixes {
				if !info.IsDir() && strings.HasSuffix(p, s) {
					rel, _ := filepath.Rel(root, p)
					out = append(out, rel)
				}
			}
			return nil
		})
		require.NoError(t, err)
	}
	sort.Strings(out)
	return out
}

// uncommented drops BitBake comment lines (shell and Python comments inside functions too).
func uncommented(text string) string {
	var b strings.Builder
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// The kas files validate against every kas JSON schema at hand: KAS_SCHEMA, kas 5.4's (in
// ../shared/data next to the repository) and the one of the kas Debian installs (3.1, which .ci/run
// installs, so CI always checks at least that one), with Debian's python3-jsonschema and
// python3-yaml.
func TestKasFilesMatchSchema(t *testing.T) {
	var schemas []string
	for _, s := range []string{os.Getenv("KAS_SCHEMA"), filepath.Join(root, "..", "shared", "data", "kas-schema-5.4.json"),
		"/usr/lib/python3/dist-packages/kas/schema-kas.json"} {
		if _, err := os.Stat(s); s != "" && err == nil {
			schemas = append(schemas, s)
		}
	}
	if len(schemas) == 0 {
		t.Skip("no kas schema found: install Debian's kas or set KAS_SCHEMA to kas's schema-kas.json")
	}
	files, err := filepath.Glob(filepath.Join(root, "kas", "*.yml"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 4, "kas/ should hold common.yml and the three machines")
	const validate = `
import json, sys, yaml, jsonschema
schema = json.load(open(sys.argv[1]))
bad = 0
for path in sys.argv[2:]:
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(yaml.safe_load(open(path))))
    for e in errors:
        print("%s: %s: %s" % (path, "/".join(str(p) for p in e.absolute_path), e.message))
    bad += len(errors)
sys.exit(1 if bad else 0)
`
	for _, schema := range schemas {
		out, err := exec.Command("/usr/bin/python3", append([]string{"-c", validate, schema}, files...)...).CombinedOutput()
		require.NoError(t, err, "kas files do not match %s (needs python3-jsonschema, python3-yaml):\n%s", schema, out)
		t.Logf("kas files match %s", schema)
	}

	// Every machine file includes the common one and names its machine; the distro is set once.
	common := read(t, "kas/common.yml")
	require.Regexp(t, `(?m)^distro: poky$`, common)
	for _, m := range []string{"qemux86-64", "qemuarm64", "raspberrypi3"} {
		text := read(t, "kas/"+m+".yml")
		require.Contains(t, text, "- kas/common.yml", m)
		require.Regexp(t, `(?m)^machine: `+m+`$`, text)
	}
}

var (
	fileURI     = regexp.MustCompile(`file://([^;\s"')]+)`)
	thisDirPath = regexp.MustCompile(`:= "\$\{THISDIR\}/([^":]*):?"`)
	requireLine = regexp.MustCompile(`(?m)^require (recipes-[^\s$]+|[^\s/$]+\.inc)$`)
	unpacked    = regexp.MustCompile(`\$\{MEMFAULT_GO_UNPACKDIR\}/([^\s]+)`)
	// license files are checked, not fetched (go-mod-srcuri.sh --check covers the modules')
	licChksum = regexp.MustCompile(`LIC_FILES_CHKSUM[^"]*"[^"]*"`)
)

// Every file:// a recipe or append fetches exists where BitBake looks for it, and every file a
// recipe installs from the unpack directory is one it fetches.
func TestRecipeFilesExist(t *testing.T) {
	recipes := layerFiles(t, ".bb", ".bbappend")
	require.NotEmpty(t, recipes)
	for _, rel := range recipes {
		dir := filepath.Dir(rel)
		base := filepath.Base(rel)
		bpn := base[:strings.IndexAny(base, "_.%")]
		// the recipe and what it requires (statically named files)
		sources := map[string]string{rel: read(t, rel)}
		for i := 0; i < 3; i++ {
			for from, text := range sources {
				for _, m := range requireLine.FindAllStringSubmatch(text, -1) {
					inc := m[1]
					if !strings.HasPrefix(inc, "recipes-") {
						inc = filepath.Join(filepath.Dir(from), inc)
					}
					if _, ok := sources[inc]; !ok {
						sources[inc] = read(t, inc)
					}
				}
			}
		}
		// where BitBake looks: FILESEXTRAPATHS / THISDIR-relative directories, then the
		// recipe's own files/ and BPN/ directories
		search := []string{filepath.Join(dir, "files"), filepath.Join(dir, bpn), dir}
		var fetched []string
		for from, text := range sources {
			text = licChksum.ReplaceAllString(uncommented(text), "")
			for _, m := range thisDirPath.FindAllStringSubmatch(text, -1) {
				search = append(search, filepath.Clean(filepath.Join(filepath.Dir(from), m[1])))
			}
			for _, m := range fileURI.FindAllStringSubmatch(text, -1) {
				fetched = append(fetched, m[1])
			}
		}
		for _, f := range fetched {
			found := false
			for _, s := range search {
				if _, err := os.Stat(filepath.Join(root, s, f)); err == nil {
					found = true
				}
			}
			require.True(t, found, "%s fetches file://%s, which is in none of %v", rel, f, search)
		}
		for _, m := range unpacked.FindAllStringSubmatch(uncommented(sources[rel]), -1) {
			require.Contains(t, fetched, m[1], "%s installs %s, which it does not fetch", rel, m[1])
		}
	}
	// the memfaultd recipe installs what the issue asks for
	bb := read(t, "recipes-support/memfaultd/memfaultd_0.1.0.bb")
	for _, want := range []string{"${D}${bindir}/memfaultd", "${D}${bindir}/memfaultctl",
		"${D}${sbindir}/memfault-core-handler", "${D}${systemd_system_unitdir}/memfaultd.service",
		"${D}${sysconfdir}/init.d/memfaultd", "${D}${libdir}/sysctl.d/", "${D}${sysconfdir}/memfaultd.conf"} {
		require.Contains(t, bb, want)
	}
}

var memfaultVar = regexp.MustCompile(`\bMEMFAULT_[A-Z0-9_]+\b`)

// readmeYocto is README.md's Yocto section.
func readmeYocto(t *testing.T) string {
	readme := read(t, "README.md")
	start := strings.Index(readme, "\n## Yocto")
	require.GreaterOrEqual(t, start, 0, "README.md has no \"## Yocto\" section")
	section := readme[start+1:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	return section
}

// Every MEMFAULT_* variable README.md's Yocto section documents is read by a recipe, append or
// class; every one the layer gives a default (?=, ??=) is documented.
func TestReadmeVariablesAreRead(t *testing.T) {
	var metadata strings.Builder
	for _, f := range layerFiles(t, ".bb", ".bbappend", ".bbclass", ".inc") {
		metadata.WriteString(uncommented(read(t, f)))
	}
	meta := metadata.String()
	section := readmeYocto(t)
	documented := map[string]bool{}
	for _, v := range memfaultVar.FindAllString(section, -1) {
		documented[v] = true
	}
	require.NotEmpty(t, documented)
	for v := range documented {
		// a use: d.getVar('X'), ${X}, an assignment read by a function, or the environment
		// variable names the upload task reads
		used := regexp.MustCompile(`\$\{` + v + `\}|getVar\('` + v + `'\)|'` + v + `'`).MatchString(meta)
		require.True(t, used, "README.md documents %s, but no recipe, append or class reads it", v)
	}
	defaults := regexp.MustCompile(`(?m)^(MEMFAULT_[A-Z0-9_]+) \?\??=`)
	for _, m := range defaults.FindAllStringSubmatch(meta, -1) {
		require.True(t, documented[m[1]], "%s has a default in the layer but README.md's Yocto section does not document it", m[1])
	}
}

// The generated module lists match src/go.mod and src/go.sum.
func TestGoModIncsCurrent(t *testing.T) {
	cmd := exec.Command(filepath.Join(root, "scripts", "go-mod-srcuri.sh"), "--check")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
}

// recipeVars reads `[export ]NAME = "VALUE"` assignments of a recipe file.
func recipeVars(t *testing.T, rel string) map[string]string {
	vars := map[string]string{}
	re := regexp.MustCompile(`^(?:export )?([A-Za-z0-9_:${}-]+) = "(.*)"$`)
	sc := bufio.NewScanner(strings.NewReader(read(t, rel)))
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			vars[m[1]] = m[2]
		}
	}
	return vars
}

// proxyEntry is one module of <recipe>-go-mods-proxy.inc.
type proxyEntry struct{ module, version, sha256 string }

func proxyEntries(t *testing.T, rel string) []proxyEntry {
	re := regexp.MustCompile(`gomodule=([^;]+);gomodversion=([^;]+);sha256sum=([0-9a-f]{64})`)
	var out []proxyEntry
	for _, m := range re.FindAllStringSubmatch(read(t, rel), -1) {
		out = append(out, proxyEntry{m[1], m[2], m[3]})
	}
	require.NotEmpty(t, out, rel)
	return out
}

func escapePath(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 'A' && r <= 'Z' {
			b.WriteByte('!')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// moduleCache builds what memfault_go_mod_cache (memfault-go.inc) builds in do_unpack: a module
// cache whose cache/download holds only the listed zips (checked against the listed sha256)
// and their go.mod files. The zips come from the developer's own module cache, where the go
// command keeps the bytes the module proxy served.
func moduleCache(t *testing.T, entries []proxyEntry) string {
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	require.NoError(t, err)
	from := filepath.Join(strings.TrimSpace(string(out)), "cache", "download")
	cache := t.TempDir()
	for _, e := range entries {
		src := filepath.Join(from, escapePath(e.module), "@v", escapePath(e.version)+".zip")
		data, err := os.ReadFile(src)
		require.NoError(t, err, "module %s@%s is not in the module cache: run `go mod download` in src/", e.module, e.version)
		sum := sha256.Sum256(data)
		require.Equal(t, e.sha256, hex.EncodeToString(sum[:]), "sha256 of %s", src)
		dest := filepath.Join(cache, "cache", "download", escapePath(e.module), "@v")
		require.NoError(t, os.MkdirAll(dest, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dest, escapePath(e.version)+".zip"), data, 0o644))
		zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
		require.NoError(t, err)
		mod := []byte(fmt.Sprintf("module %s\n", e.module))
		for _, f := range zr.File {
			if f.Name == e.module+"@"+e.version+"/go.mod" {
				rc, err := f.Open()
				require.NoError(t, err)
				mod, err = io.ReadAll(rc)
				require.NoError(t, err)
				rc.Close()
			}
		}
		require.NoError(t, os.WriteFile(filepath.Join(dest, escapePath(e.version)+".mod"), mod, 0o644))
	}
	return cache
}

// gnuBuildID returns the GNU build-id note's descriptor, or nil.
func gnuBuildID(t *testing.T, f *elf.File) []byte {
	s := f.Section(".note.gnu.build-id")
	if s == nil {
		return nil
	}
	data, err := s.Data()
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(data), 12)
	bo := f.ByteOrder
	namesz, descsz, typ := bo.Uint32(data), bo.Uint32(data[4:]), bo.Uint32(data[8:])
	nameEnd := 12 + int((namesz+3)&^3)
	require.Equal(t, uint32(3), typ, "NT_GNU_BUILD_ID")
	require.Equal(t, "GNU\x00", string(data[12:12+namesz]))
	require.LessOrEqual(t, nameEnd+int(descsz), len(data))
	return data[nameEnd : nameEnd+int(descsz)]
}

// The recipes' Go build, reproduced outside BitBake: the flags and environment of
// memfault-go.inc (go.bbclass adds -trimpath, -buildmode=pie and -modcacherw), offline
// (GOPROXY=off) from a module cache holding only the modules the generated list names, for
// 64-bit and 32-bit ARM. Each binary carries a GNU build-id.
func TestRecipeGoBuild(t *testing.T) {
	inc := recipeVars(t, "recipes-support/memfaultd/memfault-go.inc")
	goImport := inc["GO_IMPORT"]
	require.Equal(t, "meta-memfault-go", goImport)
	for _, v := range []string{"CGO_ENABLED", "GOTOOLCHAIN", "GOWORK", "GOPROXY", "GOFLAGS", "GO_EXTRA_LDFLAGS", "GOBUILDFLAGS:remove:arm"} {
		require.Contains(t, inc, v, "memfault-go.inc sets %s", v)
	}
	require.Equal(t, "off", inc["GOPROXY"])
	require.Equal(t, "", inc["GO_LINKSHARED"])

	cases := []struct {
		recipe, pv, cmd, goarch string
		machine                 elf.Machine
	}{
		{"memfaultd", "0.1.0", "memfaultd", "arm64", elf.EM_AARCH64},
		{"memfaultd", "0.1.0", "memfaultd", "arm", elf.EM_ARM},
		{"memfault-cli", "0.1.0", "memfault", "arm64", elf.EM_AARCH64},
	}
	for _, c := range cases {
		t.Run(c.recipe+"-"+c.goarch, func(t *testing.T) {
			_, err := os.Stat(filepath.Join(root, "recipes-support", c.recipe, c.recipe+"_"+c.pv+".bb"))
			require.NoError(t, err)
			cache := moduleCache(t, proxyEntries(t, filepath.Join("recipes-support", c.recipe, c.recipe+"-go-mods-proxy.inc")))
			ldflags := strings.NewReplacer("${GO_IMPORT}", goImport, "${PV}", c.pv).Replace(inc["GO_EXTRA_LDFLAGS"])
			args := []string{"build", "-trimpath", "-modcacherw"}
			if c.goarch != "arm" { // GOBUILDFLAGS:remove:arm = "-buildmode=pie"
				args = append(args, "-buildmode=pie")
			}
			bin := filepath.Join(t.TempDir(), c.cmd)
			args = append(args, "-ldflags="+ldflags, "-o", bin, "./cmd/"+c.cmd)
			cmd := exec.Command("go", args...)
			cmd.Dir = filepath.Join(root, "src")
			cmd.Env = append(os.Environ(),
				"GOENV=off", "GOOS=linux", "GOARCH="+c.goarch, "GOARM=7", "GOMODCACHE="+cache,
				"CGO_ENABLED="+inc["CGO_ENABLED"], "GOTOOLCHAIN="+inc["GOTOOLCHAIN"], "GOWORK="+inc["GOWORK"],
				"GOPROXY="+inc["GOPROXY"],
				// the recipe's source has no .git; here it would be asked for VCS stamping
				"GOFLAGS="+inc["GOFLAGS"]+" -buildvcs=false")
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "go %s:\n%s", strings.Join(args, " "), out)

			f, err := elf.Open(bin)
			require.NoError(t, err)
			defer f.Close()
			require.Equal(t, c.machine, f.Machine)
			id := gnuBuildID(t, f)
			require.Len(t, id, 20, "%s has no 20-byte GNU build-id", bin)
			for _, p := range f.Progs {
				if c.goarch == "arm" {
					require.NotEqual(t, elf.PT_INTERP, p.Type, "the arm build is a static executable")
				}
			}
			libs, err := f.ImportedLibraries()
			require.NoError(t, err)
			require.Empty(t, libs, "no shared libraries: the binary is self-contained")
			t.Logf("%s %s: %d bytes, build-id %x", c.cmd, c.goarch, fileSize(t, bin), id)
		})
	}
}

func fileSize(t *testing.T, p string) int64 {
	st, err := os.Stat(p)
	require.NoError(t, err)
	return st.Size()
}
