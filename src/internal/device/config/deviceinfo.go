package config

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// DeviceInfoProgram is the integrator-provided program that prints the device identity.
const DeviceInfoProgram = "memfault-device-info"

// DefaultDeviceInfoTimeout is used by LoadDeviceInfo when given a timeout <= 0.
const DefaultDeviceInfoTimeout = 5 * time.Second

const maxDeviceInfoOutput = 64 << 10 // bytes kept of the program's stdout and of its stderr

// DeviceInfo is who this device is, as reported with every upload.
type DeviceInfo struct {
	DeviceID        string // MEMFAULT_DEVICE_ID (device serial)
	HardwareVersion string // MEMFAULT_HARDWARE_VERSION
	SoftwareVersion string // MEMFAULT_SOFTWARE_VERSION
	SoftwareType    string // MEMFAULT_SOFTWARE_TYPE
}

// LoadDeviceInfo determines the device identity. Each field comes from the first of:
//   - (software version and type only) the config's software_version / software_type, when set;
//   - the output of memfault-device-info, when that program is on PATH: KEY=VALUE lines
//     MEMFAULT_DEVICE_ID, MEMFAULT_HARDWARE_VERSION, MEMFAULT_SOFTWARE_VERSION,
//     MEMFAULT_SOFTWARE_TYPE (other lines are ignored);
//   - <root>/etc/machine-id, the host name (<root>/proc/sys/kernel/hostname), and VERSION_ID and
//     ID of <root>/etc/os-release (or <root>/usr/lib/os-release).
//
// The program runs with stdin from /dev/null in its own process group; the whole group is
// killed after timeout (DefaultDeviceInfoTimeout when <= 0) or when ctx ends. When it is on PATH
// but fails or times out, LoadDeviceInfo returns an error rather than silently reporting the
// device under another identity. It is also an error when a field stays empty. c may be nil.
// root is "/" on a device and a fixture tree in tests.
func LoadDeviceInfo(ctx context.Context, c *Config, root string, timeout time.Duration) (DeviceInfo, error) {
	if root == "" {
		root = "/"
	}
	var info DeviceInfo
	prog, err := exec.LookPath(DeviceInfoProgram)
	switch {
	case err == nil:
		if info, err = runDeviceInfo(ctx, prog, timeout); err != nil {
			return DeviceInfo{}, err
		}
	case errors.Is(err, exec.ErrNotFound):
	default:
		return DeviceInfo{}, fmt.Errorf("device info: %w", err)
	}

	if c != nil && c.SoftwareVersion != "" {
		info.SoftwareVersion = c.SoftwareVersion
	}
	if c != nil && c.SoftwareType != "" {
		info.SoftwareType = c.SoftwareType
	}

	machineID := filepath.Join(root, "etc/machine-id")
	hostname := filepath.Join(root, "proc/sys/kernel/hostname")
	if info.DeviceID == "" {
		if info.DeviceID, err = readTrimmed(machineID); err != nil {
			return DeviceInfo{}, fmt.Errorf("device info: %w", err)
		}
	}
	if info.HardwareVersion == "" {
		if info.HardwareVersion, err = readTrimmed(hostname); err != nil {
			return DeviceInfo{}, fmt.Errorf("device info: %w", err)
		}
	}
	osRelease := ""
	if info.SoftwareVersion == "" || info.SoftwareType == "" {
		var rel map[string]string
		if rel, osRelease, err = readOSRelease(root); err != nil {
			return DeviceInfo{}, fmt.Errorf("device info: %w", err)
		}
		if info.SoftwareVersion == "" {
			info.SoftwareVersion = rel["VERSION_ID"]
		}
		if info.SoftwareType == "" {
			info.SoftwareType = rel["ID"]
		}
	}
	if osRelease == "" {
		osRelease = filepath.Join(root, "etc/os-release")
	}

	var missing []string
	if info.DeviceID == "" {
		missing = append(missing, "device id (MEMFAULT_DEVICE_ID, "+machineID+")")
	}
	if info.HardwareVersion == "" {
		missing = append(missing, "hardware version (MEMFAULT_HARDWARE_VERSION, "+hostname+")")
	}
	if info.SoftwareVersion == "" {
		missing = append(missing, "software version (software_version, MEMFAULT_SOFTWARE_VERSION, VERSION_ID in "+osRelease+")")
	}
	if info.SoftwareType == "" {
		missing = append(missing, "software type (software_type, MEMFAULT_SOFTWARE_TYPE, ID in "+osRelease+")")
	}
	if len(missing) > 0 {
		return DeviceInfo{}, fmt.Errorf("device info: no %s", strings.Join(missing, "; no "))
	}
	return info, nil
}

func runDeviceInfo(ctx context.Context, prog string, timeout time.Duration) (DeviceInfo, error) {
	if timeout <= 0 {
		timeout = DefaultDeviceInfoTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var stdout, stderr cappedBuffer
	cmd := exec.CommandContext(ctx, prog)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second // in case something outside the group holds stdout open
	err := cmd.Run()
	if cerr := ctx.Err(); cerr != nil {
		if errors.Is(cerr, context.DeadlineExceeded) {
			return DeviceInfo{}, fmt.Errorf("device info: %s killed after %s", prog, timeout)
		}
		return DeviceInfo{}, fmt.Errorf("device info: %s: %w", prog, cerr)
	}
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return DeviceInfo{}, fmt.Errorf("device info: %s: %w: %s", prog, err, msg)
		}
		return DeviceInfo{}, fmt.Errorf("device info: %s: %w", prog, err)
	}

	var info DeviceInfo
	sc := bufio.NewScanner(bytes.NewReader(stdout.Bytes()))
	sc.Buffer(nil, maxDeviceInfoOutput)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case "MEMFAULT_DEVICE_ID":
			info.DeviceID = v
		case "MEMFAULT_HARDWARE_VERSION":
			info.HardwareVersion = v
		case "MEMFAULT_SOFTWARE_VERSION":
			info.SoftwareVersion = v
		case "MEMFAULT_SOFTWARE_TYPE":
			info.SoftwareType = v
		}
	}
	if err := sc.Err(); err != nil {
		return DeviceInfo{}, fmt.Errorf("device info: output of %s: %w", prog, err)
	}
	return info, nil
}

// cappedBuffer keeps the first maxDeviceInfoOutput bytes written and discards the rest, without
// failing the writer (so the program is not killed by a broken pipe).
type cappedBuffer struct{ bytes.Buffer }

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := maxDeviceInfoOutput - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// readTrimmed returns the file's content without surrounding white space, "" when it does not
// exist.
func readTrimmed(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// readOSRelease reads os-release(5) from <root>/etc, else <root>/usr/lib. It returns the
// variables and the file read ("" when neither exists).
func readOSRelease(root string) (map[string]string, string, error) {
	for _, p := range []string{"etc/os-release", "usr/lib/os-release"} {
		path := filepath.Join(root, p)
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		return parseOSRelease(b), path, nil
	}
	return map[string]string{}, "", nil
}

// parseOSRelease parses VAR=value lines; values may be quoted as in a shell.
func parseOSRelease(b []byte) map[string]string {
	vars := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			q := v[0]
			v = v[1 : len(v)-1]
			if q == '"' && strings.Contains(v, `\`) {
				var u strings.Builder
				for i := 0; i < len(v); i++ {
					if v[i] == '\\' && i+1 < len(v) && strings.IndexByte("\"\\$`", v[i+1]) >= 0 {
						i++
					}
					u.WriteByte(v[i])
				}
				v = u.String()
			}
		}
		vars[k] = v
	}
	return vars
}
