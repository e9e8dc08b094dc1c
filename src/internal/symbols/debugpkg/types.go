// Package debugpkg turns what a Yocto build deploys (the image's rootfs tarball and its -dbg
// tarball) or a plain archive of ELF files into the symbol files to upload: every ELF of the
// image with its GNU build-id, paired with its separate debug file and recombined so that the
// uploaded file holds DWARF, the symbol table and the unwind tables together.
package debugpkg

import (
	"context"
	"os"
)

// ELFInfo describes one ELF file of an image.
type ELFInfo struct {
	Path      string `json:"path"`     // path in the image, "/usr/bin/foo"
	BuildID   string `json:"build_id"` // GNU build-id, lower-case hex; "" when the file has none
	Type      string `json:"type"`     // exec, pie, shared, relocatable (kernel module), other
	Machine   string `json:"machine"`
	HasDebug  bool   `json:"has_debug_info"` // .debug_info in the file itself
	HasSymtab bool   `json:"has_symtab"`
	DebugLink string `json:"debuglink,omitempty"` // .gnu_debuglink file name
	Size      int64  `json:"size"`
	// DebugFile is the image path of the separate debug file paired with this ELF ("" when
	// none was found); PairedBy says how: build-id, path, debuglink.
	DebugFile string `json:"debug_file,omitempty"`
	PairedBy  string `json:"paired_by,omitempty"`
	// Links are the other names of the same file: hard links, and symlinks that resolve to it.
	// Each file is listed (and uploaded) once, under the first of its names in the image.
	Links []string `json:"links,omitempty"`
}

// Symbol is one file to upload, on disk in the temporary directory.
type Symbol struct {
	BuildID string `json:"build_id"`
	Path    string `json:"path"` // image path of the binary it describes
	File    string `json:"-"`    // the file on disk
	Size    int64  `json:"size"`
	// Source says how the file was made: "unstripped" (eu-unstrip of the binary and its debug
	// file), "debug-only" (the debug file alone: the binary could not be recombined), or
	// "binary" (the binary itself already has DWARF); "on-server" when the server already has
	// the build-id (Options.Present): nothing was made, File is "" and Size 0.
	Source string `json:"source"`
}

// Skipped is a file of the image that gives no symbol file, with the reason: one of the
// Reason constants, so that reports can group them; Detail says more when there is more.
type Skipped struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
	Detail string `json:"detail,omitempty"`
}

// Reasons for Skipped.
const (
	ReasonNotELF      = "not an ELF file"
	ReasonRefused     = "refused by the archive reader" // a name or link outside the image, a limit
	ReasonNotReadable = "not readable"
	ReasonMalformed   = "malformed ELF file"
	ReasonNoBuildID   = "no GNU build-id"
	ReasonNotCode     = "not a program, library or module" // ET_CORE and other types
	ReasonNoDebug     = "no debug information found"
	ReasonUnstrip     = "cannot be recombined with its debug file"
	ReasonOrphanDebug = "debug file whose binary is not in the image"
)

// Result is everything found in one image (or archive).
// Its symbol files live in a directory of its own under Options.TmpDir until Close.
type Result struct {
	ELFs       []ELFInfo `json:"elfs"`
	Symbols    []Symbol  `json:"symbols"`
	Skipped    []Skipped `json:"skipped"`
	SplitStyle string    `json:"split_style,omitempty"` // PACKAGE_DEBUG_SPLIT_STYLE detected or given
	// DbgImageSkipped says that the -dbg image was not read: Options.Present answered that the
	// server has the symbols of every binary of the image (pairings are then not known).
	DbgImageSkipped bool `json:"dbg_image_skipped,omitempty"`
	// Input says how the inputs were read: whether the image's index came from the cache, and
	// how many bytes were hashed, fed to a decompressor and decompressed.
	Input Input `json:"input"`

	dir string
}

// Input says how the inputs of a run were read.
type Input struct {
	// FromCache: the image's index (its ELF files, their build-ids and facts, the files
	// skipped and why) came from Options.CacheDir, found by the SHA-256 of the image file;
	// the image was hashed, not decompressed. Only when the server has every build-id of the
	// image: then nothing of it is needed but its index.
	FromCache bool `json:"from_cache"`
	// ImageSHA256 is the SHA-256 of the image file's bytes (tarballs, with a cache only).
	ImageSHA256 string    `json:"image_sha256,omitempty"`
	Image       ReadCount `json:"image"`
	DbgImage    ReadCount `json:"dbg_image"`
}

// ReadCount is how much of one input was read (tarballs; directories count nothing).
type ReadCount struct {
	Hashed       int64  `json:"hashed"`       // bytes hashed for the cache key
	Compressed   int64  `json:"compressed"`   // bytes of the file fed to the tar reader (and its decompressor)
	Decompressed int64  `json:"decompressed"` // bytes of tar stream decoded from them
	Decompressor string `json:"decompressor,omitempty"`
}

// Close removes the result's directory and every file in it (the Symbols' files).
func (r *Result) Close() error {
	if r == nil || r.dir == "" {
		return nil
	}
	err := os.RemoveAll(r.dir)
	r.dir = ""
	return err
}

// Options tune FromYocto and FromArchive.
type Options struct {
	TmpDir      string                           // where files are extracted and recombined ("" = os.TempDir(), which honours TMPDIR)
	EuUnstrip   string                           // path of eu-unstrip ("" = found in PATH)
	SplitStyle  string                           // "" = detect from the -dbg image's layout; else one of SplitStyles
	Concurrency int                              // parallel eu-unstrip runs (default 8)
	Log         func(format string, args ...any) // progress and warnings; called from one goroutine at a time
	// Present, when set, is asked once, as soon as the image (the rootfs, or the archive) has
	// been read, with the build-ids of its ELF files (lower-case, sorted, unique); it answers
	// which of them the server already has (nil: none). Those are neither recombined nor kept:
	// their Symbol has Source SourceOnServer and no File. When the server has at least one and
	// every binary that would need the -dbg image is among them, the -dbg image is not read
	// (Result.DbgImageSkipped): a second upload of the same build reads the rootfs only.
	Present func(ctx context.Context, buildIDs []string) map[string]bool
	// CacheDir, when set, keeps an index of each image tarball read (its ELF files with their
	// build-ids and facts, the files skipped and why) under CacheDir/image-index, named by the
	// SHA-256 of the tarball's bytes (hashed while it is read). When the same bytes come again
	// and Present says the server has every build-id of the index, the image is hashed but not
	// decompressed (Result.Input.FromCache), and the Result is the one reading it would give.
	// Otherwise, or when the entry is missing, unreadable or corrupt, the image is read as
	// without a cache. A cache that cannot be written is logged, never an error.
	CacheDir string
}
