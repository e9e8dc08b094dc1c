package logring

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tree makes a fixture root with the given files ("/" suffix: a directory).
func tree(t *testing.T, paths ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, p := range paths {
		full := filepath.Join(root, p)
		if p[len(p)-1] == '/' {
			require.NoError(t, os.MkdirAll(full, 0o755))
			continue
		}
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, nil, 0o644))
	}
	return root
}

func TestDetect(t *testing.T) {
	fakeJournalctl(t, "exit 0") // journalctl on PATH in every case; the root decides

	describe := func(sources []Source) []string {
		var out []string
		for _, s := range sources {
			d := s.Name()
			if f, ok := s.(*FileSource); ok && f.SkipKernel {
				d += " (skip kernel)"
			}
			out = append(out, d)
		}
		return out
	}
	tests := []struct {
		name  string
		paths []string
		want  []string
	}{
		{"journald running: journal only", []string{"run/systemd/journal/", "var/log/messages", "dev/kmsg"},
			[]string{"journal"}},
		{"syslog preferred, kmsg read directly", []string{"var/log/syslog", "var/log/messages", "dev/kmsg"},
			[]string{"file:ROOT/var/log/syslog (skip kernel)", "kmsg:ROOT/dev/kmsg"}},
		{"busybox: messages and kmsg", []string{"run/systemd/", "var/log/messages", "dev/kmsg"},
			[]string{"file:ROOT/var/log/messages (skip kernel)", "kmsg:ROOT/dev/kmsg"}},
		{"messages without kmsg keeps kernel lines", []string{"var/log/messages"},
			[]string{"file:ROOT/var/log/messages"}},
		{"kmsg only; a directory is not a log file", []string{"var/log/syslog/", "dev/kmsg"},
			[]string{"kmsg:ROOT/dev/kmsg"}},
		{"nothing", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := tree(t, tc.paths...)
			var want []string
			for _, w := range tc.want {
				want = append(want, replaceRoot(w, root))
			}
			assert.Equal(t, want, describe(Detect(root)))
		})
	}

	t.Run("no journalctl on PATH", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		root := tree(t, "run/systemd/journal/", "var/log/messages")
		assert.Equal(t, []string{"file:" + filepath.Join(root, "var/log/messages")}, describe(Detect(root)))
	})
}

func replaceRoot(s, root string) string { return strings.Replace(s, "ROOT", root, 1) }
