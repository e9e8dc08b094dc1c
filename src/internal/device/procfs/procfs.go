// Package procfs reads the parts of /proc/<pid> that the core handler needs: the memory of the
// crashed process and its command line. Every path derives from an injectable root, so tests run
// against fixture trees.
package procfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// FS is a proc file system mounted at Root ("/proc" on a device).
type FS struct{ Root string }

// Default is the system's /proc.
var Default = FS{Root: "/proc"}

func (fs FS) path(pid int, name string) string {
	return filepath.Join(fs.Root, strconv.Itoa(pid), name)
}

// ErrVanished is returned when /proc/<pid> no longer exists.
var ErrVanished = errors.New("process vanished")

// Mem is an open /proc/<pid>/mem. While the kernel writes a core to a pipe handler the process
// cannot run, so its memory is stable; with core_pipe_limit > 0 it also stays until the handler
// exits.
type Mem struct {
	f *os.File
}

// OpenMem opens the memory of pid for reading.
func (fs FS) OpenMem(pid int) (*Mem, error) {
	f, err := os.Open(fs.path(pid, "mem"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("open memory of pid %d: %w", pid, ErrVanished)
		}
		return nil, fmt.Errorf("open memory of pid %d: %w", pid, err)
	}
	return &Mem{f: f}, nil
}

// ReadMemory reads at a virtual address. The kernel accepts the whole unsigned address range on
// this file (FMODE_UNSIGNED_OFFSET), so an address above 1<<63 is passed as it is.
func (m *Mem) ReadMemory(p []byte, addr uint64) (int, error) {
	total := 0
	for total < len(p) {
		n, err := unix.Pread(int(m.f.Fd()), p[total:], int64(addr+uint64(total)))
		if n > 0 {
			total += n
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return total, err
		}
		if n == 0 {
			return total, io.ErrUnexpectedEOF
		}
	}
	return total, nil
}

// Close closes the file.
func (m *Mem) Close() error { return m.f.Close() }

// Cmdline returns /proc/<pid>/cmdline (arguments separated by NUL bytes), at most max bytes.
func (fs FS) Cmdline(pid int, max int) (string, error) {
	f, err := os.Open(fs.path(pid, "cmdline"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("read cmdline of pid %d: %w", pid, ErrVanished)
		}
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(max)))
	if err != nil {
		return "", fmt.Errorf("read cmdline of pid %d: %w", pid, err)
	}
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return string(b), nil
}
