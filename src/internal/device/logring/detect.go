package logring

import (
	"os"
	"os/exec"
	"path/filepath"
)

// Detect returns the log sources of the system under root ("/" on a device):
//
//   - The journal alone, when journalctl is on PATH and <root>/run/systemd/journal exists
//     (journald is running). journald already carries the kernel log and every syslog
//     message, so nothing else is read: the other sources would only add duplicates.
//   - Otherwise the first of <root>/var/log/syslog and <root>/var/log/messages that is a
//     regular file, followed like `tail -F`. Only one: where both exist (rsyslog on
//     Debian-like systems) they hold mostly the same lines, and syslog is the catch-all.
//   - And the kernel log, <root>/dev/kmsg, when it can be opened for reading. It gives the
//     kernel's records with their real priority and time; the followed file then skips its
//     "kernel" lines (klogd or rsyslog's imklog copies of the same records).
//
// Detect only looks; a source that cannot run later fails in Collect and is retried there.
func Detect(root string) []Source {
	if root == "" {
		root = "/"
	}
	if _, err := exec.LookPath("journalctl"); err == nil {
		if fi, err := os.Stat(filepath.Join(root, "run/systemd/journal")); err == nil && fi.IsDir() {
			return []Source{Journal()}
		}
	}
	kmsgPath := filepath.Join(root, "dev/kmsg")
	kmsgOK := false
	if f, err := os.Open(kmsgPath); err == nil {
		f.Close()
		kmsgOK = true
	}
	var out []Source
	for _, rel := range []string{"var/log/syslog", "var/log/messages"} {
		p := filepath.Join(root, rel)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			out = append(out, &FileSource{Path: p, SkipKernel: kmsgOK})
			break
		}
	}
	if kmsgOK {
		out = append(out, Kmsg(kmsgPath))
	}
	return out
}
