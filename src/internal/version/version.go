// Package version holds the build's identity, set by the linker:
//
//	go build -ldflags "-X meta-memfault-go/internal/version.Version=1.2.3 -X ...GitCommit=abc"
package version

import (
	"debug/elf"
	"encoding/hex"
	"os"
)

// Set at link time; the defaults say the build was not stamped.
var (
	Version   = "0.0.0-dev"
	GitCommit = "unknown"
)

// BuildID is the GNU build-id of the running binary (hex), or "unknown" when it has none
// (Go 1.22 writes one only with -ldflags=-B=gobuildid).
func BuildID() string {
	exe, err := os.Executable()
	if err != nil {
		return "unknown"
	}
	f, err := elf.Open(exe)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	s := f.Section(".note.gnu.build-id")
	if s == nil {
		return "unknown"
	}
	b, err := s.Data()
	// namesz(4) descsz(4) type(4) "GNU\0" desc
	if err != nil || len(b) < 16 {
		return "unknown"
	}
	descsz := int(f.ByteOrder.Uint32(b[4:]))
	if 16+descsz > len(b) {
		return "unknown"
	}
	return hex.EncodeToString(b[16 : 16+descsz])
}
