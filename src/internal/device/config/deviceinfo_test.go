package config

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeRoot writes a device root: files maps paths below the root to their content.
func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		writeFile(t, filepath.Join(root, p), content)
	}
	return root
}

var standardRoot = map[string]string{
	"etc/machine-id":           "0123456789abcdef0123456789abcdef\n",
	"proc/sys/kernel/hostname": "qemuarm64\n",
	"etc/os-release":           "ID=poky\nNAME=\"Poky (Yocto Project Reference Distro)\"\nVERSION_ID=\"4.0.\\$7\"\n# comment\n",
}

// withProgram puts a memfault-device-info shell script with body on PATH ("" = no program).
func withProgram(t *testing.T, body string) {
	t.Helper()
	bin := t.TempDir()
	if body != "" {
		require.NoError(t, os.WriteFile(filepath.Join(bin, DeviceInfoProgram), []byte("#!/bin/sh\n"+body), 0o755))
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+"/usr/bin:/bin")
}

func TestLoadDeviceInfo(t *testing.T) {
	tests := []struct {
		name    string
		program string // script body; "" = not on PATH
		root    map[string]string
		config  *Config
		want    DeviceInfo
	}{
		{
			name: "fallbacks from the root",
			root: standardRoot,
			want: DeviceInfo{"0123456789abcdef0123456789abcdef", "qemuarm64", "4.0.$7", "poky"},
		},
		{
			name:   "config software version and type win over os-release",
			root:   standardRoot,
			config: &Config{SoftwareVersion: "2.1.0", SoftwareType: "main"},
			want:   DeviceInfo{"0123456789abcdef0123456789abcdef", "qemuarm64", "2.1.0", "main"},
		},
		{
			name: "os-release in usr/lib",
			root: map[string]string{
				"etc/machine-id":           "m\n",
				"proc/sys/kernel/hostname": "h",
				"usr/lib/os-release":       "ID='debian'\nVERSION_ID=12\n",
			},
			want: DeviceInfo{"m", "h", "12", "debian"},
		},
		{
			name:    "program output",
			program: "echo MEMFAULT_DEVICE_ID=SN-42\necho MEMFAULT_HARDWARE_VERSION=evt2\necho MEMFAULT_SOFTWARE_VERSION=9.9\necho MEMFAULT_SOFTWARE_TYPE=fw\necho OTHER=x\necho not a pair\n",
			root:    standardRoot,
			want:    DeviceInfo{"SN-42", "evt2", "9.9", "fw"},
		},
		{
			name:    "program without software fields, config wins, root fills the rest",
			program: "printf 'MEMFAULT_DEVICE_ID = SN-42 \\r\\nMEMFAULT_HARDWARE_VERSION=evt2\\n'\n",
			root:    standardRoot,
			config:  &Config{SoftwareType: "main"},
			want:    DeviceInfo{"SN-42", "evt2", "4.0.$7", "main"},
		},
		{
			name:    "config wins over the program",
			program: "echo MEMFAULT_DEVICE_ID=a; echo MEMFAULT_HARDWARE_VERSION=b; echo MEMFAULT_SOFTWARE_VERSION=c; echo MEMFAULT_SOFTWARE_TYPE=d\n",
			config:  &Config{SoftwareVersion: "v", SoftwareType: "t"},
			want:    DeviceInfo{"a", "b", "v", "t"},
		},
		{
			name:    "program gets an empty stdin",
			program: "cat >/dev/null\necho MEMFAULT_DEVICE_ID=a; echo MEMFAULT_HARDWARE_VERSION=b; echo MEMFAULT_SOFTWARE_VERSION=c; echo MEMFAULT_SOFTWARE_TYPE=d\n",
			want:    DeviceInfo{"a", "b", "c", "d"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			withProgram(t, tt.program)
			root := fakeRoot(t, tt.root)
			got, err := LoadDeviceInfo(context.Background(), tt.config, root, 5*time.Second)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestLoadDeviceInfoErrors(t *testing.T) {
	tests := []struct {
		name    string
		program string
		root    map[string]string
		want    []string
	}{
		{
			name: "no machine-id",
			root: map[string]string{"proc/sys/kernel/hostname": "h", "etc/os-release": "ID=x\nVERSION_ID=1\n"},
			want: []string{"device info: no device id (MEMFAULT_DEVICE_ID, ", "/etc/machine-id)"},
		},
		{
			name: "no VERSION_ID, nothing else set",
			root: map[string]string{"etc/machine-id": "m", "proc/sys/kernel/hostname": "h", "etc/os-release": "ID=x\n"},
			want: []string{"no software version (software_version, MEMFAULT_SOFTWARE_VERSION, VERSION_ID in ", "/etc/os-release)"},
		},
		{
			name: "empty root",
			want: []string{"no device id", "; no hardware version", "; no software version", "; no software type"},
		},
		{
			name:    "program fails",
			program: "echo 'cannot read serial' >&2\nexit 3\n",
			root:    standardRoot,
			want:    []string{"memfault-device-info: exit status 3: cannot read serial"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			withProgram(t, tt.program)
			_, err := LoadDeviceInfo(context.Background(), nil, fakeRoot(t, tt.root), time.Second)
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestLoadDeviceInfoKillsAHangingProgram(t *testing.T) {
	// The background sleep keeps stdout open after the shell is killed: the whole process
	// group must go.
	withProgram(t, "echo MEMFAULT_DEVICE_ID=a\nsleep 30 &\nsleep 30\n")
	root := fakeRoot(t, standardRoot)
	start := time.Now()
	_, err := LoadDeviceInfo(context.Background(), nil, root, 200*time.Millisecond)
	elapsed := time.Since(start)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "killed after 200ms")
	assert.Less(t, elapsed, 3*time.Second)
}

func TestLoadDeviceInfoCanceled(t *testing.T) {
	withProgram(t, "sleep 30\n")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := LoadDeviceInfo(ctx, nil, fakeRoot(t, standardRoot), time.Minute)
	require.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(start), 3*time.Second)
}

func TestParseOSRelease(t *testing.T) {
	got := parseOSRelease([]byte("ID=poky\n  VERSION_ID=\"1.0 \\\"beta\\\" \\\\ \\$x\"\nNAME='a b'\n\n#X=1\nBROKEN\nEMPTY=\n"))
	assert.Equal(t, map[string]string{"ID": "poky", "VERSION_ID": `1.0 "beta" \ $x`, "NAME": "a b", "EMPTY": ""}, got)
}
