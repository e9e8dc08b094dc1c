package daemon

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRefusesBadConfig: memfaultd does not start on a broken configuration, says which file,
// key and value, and changes nothing on the system.
func TestRefusesBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"syntax", "{\n  \"persist_dir\": \"/tmp/x\",\n  \"enable_data_collection\": tru\n}", []string{"memfaultd.conf", "line 3"}},
		{"bad value", `{"coredump": {"capture_strategy": {"type": "everything"}}}`, []string{"memfaultd.conf", "coredump.capture_strategy.type", `"everything"`}},
		{"relative persist_dir", `{"persist_dir": "media/memfault"}`, []string{"persist_dir", `"media/memfault"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, _ := fakeProc(t, "core", "0")
			cfg := filepath.Join(t.TempDir(), "memfaultd.conf")
			require.NoError(t, os.WriteFile(cfg, []byte(tc.body), 0o644))
			_, err := New(Options{ConfigPath: cfg, ProcRoot: k.ProcRoot})
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
			p, l := kernel(t, k)
			require.Equal(t, "core", p)
			require.Equal(t, "0", l)
		})
	}
}
