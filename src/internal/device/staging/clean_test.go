package staging

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/protocol"
)

// stage writes a complete entry with an attachment of size bytes, dated at t.
func stage(t *testing.T, d Dir, size int, at time.Time) Info {
	e, err := d.NewEntry()
	require.NoError(t, err)
	f, err := e.Create("core.elf")
	require.NoError(t, err)
	_, err = f.Write(make([]byte, size))
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.NoError(t, e.Commit(&protocol.Manifest{SchemaVersion: 1, Type: protocol.ManifestTypeCoredump}))
	require.NoError(t, os.Chtimes(filepath.Join(e.Path, ManifestName), at, at))
	return Info{UUID: e.UUID, Path: e.Path}
}

func uuids(t *testing.T, d Dir) []string {
	l, err := d.List()
	require.NoError(t, err)
	var out []string
	for _, e := range l {
		out = append(out, e.UUID)
	}
	return out
}

func TestCleanAgeUsageAndAbandoned(t *testing.T) {
	d := Dir{Path: filepath.Join(t.TempDir(), "mar")}
	now := time.Now()
	old := stage(t, d, 1000, now.Add(-2*time.Hour))
	a := stage(t, d, 4000, now.Add(-30*time.Minute))
	b := stage(t, d, 4000, now.Add(-20*time.Minute))
	c := stage(t, d, 4000, now.Add(-10*time.Minute))

	// An abandoned entry (no manifest) from long ago, and one being written right now.
	abandoned, err := d.NewEntry()
	require.NoError(t, err)
	require.NoError(t, os.Chtimes(abandoned.Path, now.Add(-5*time.Minute), now.Add(-5*time.Minute)))
	writing, err := d.NewEntry()
	require.NoError(t, err)

	rep, err := d.Clean(CleanPolicy{MaxUsage: 9000, MaxAge: time.Hour}, now)
	require.NoError(t, err)
	require.Equal(t, CleanReport{Abandoned: 1, Expired: 1, Evicted: 1, Freed: rep.Freed}, rep)
	left := uuids(t, d)
	require.NotContains(t, left, old.UUID)
	require.NotContains(t, left, a.UUID, "the oldest complete entry goes first")
	require.NotContains(t, left, abandoned.UUID)
	require.Contains(t, left, b.UUID)
	require.Contains(t, left, c.UUID)
	require.Contains(t, left, writing.UUID, "an entry being written is left alone")
}

func TestCleanHeadroomOnRealFilesystem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs: %v %s", err, out)
	}
	defer exec.Command("umount", dir).Run()
	d := Dir{Path: filepath.Join(dir, "mar")}
	now := time.Now()
	for i := 0; i < 6; i++ {
		stage(t, d, 150<<10, now.Add(time.Duration(i-10)*time.Minute))
	}
	sp, err := FreeSpace(d.Path)
	require.NoError(t, err)
	// Ask for 300 KiB more headroom than there is: about two entries must go.
	rep, err := d.Clean(CleanPolicy{MinHeadroom: sp.AvailBytes + 300<<10}, now)
	require.NoError(t, err)
	require.GreaterOrEqual(t, rep.Evicted, 2)
	sp2, err := FreeSpace(d.Path)
	require.NoError(t, err)
	require.GreaterOrEqual(t, sp2.AvailBytes, sp.AvailBytes+300<<10)
	require.Len(t, uuids(t, d), 6-rep.Evicted)
}
