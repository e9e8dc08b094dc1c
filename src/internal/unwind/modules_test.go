package unwind_test

import (
	"debug/elf"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"meta-memfault-go/internal/elfcore"
	"meta-memfault-go/internal/unwind"
)

// TestModulesFromCore checks the modules found in each fixture core: every ELF mapping has a
// build-id read from the core's memory, the program's matches the fixture binary, and its bias
// places the binary's entry point where the auxiliary vector says it is.
func TestModulesFromCore(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.arch, func(t *testing.T) {
			c := loadFixture(t, fx.arch)
			h := c.core.Header
			mods := unwind.ModulesFromCore(c.proc, c.mem, h.Class, h.ByteOrder())
			var paths []string
			for _, m := range mods {
				paths = append(paths, m.Path)
				require.Len(t, m.BuildID, 40, "%s has a SHA-1 build-id", m.Path)
				require.Less(t, m.Start, m.End)
			}
			require.Contains(t, paths, "[vdso]")

			f, err := elf.Open(filepath.Join(coresDir(), fx.arch, "threads"))
			require.NoError(t, err)
			defer f.Close()
			set := unwind.NewModuleSet(mods)
			entry, ok := c.proc.Aux(elfcore.AT_ENTRY)
			require.True(t, ok)
			m := set.ModuleAt(entry)
			require.NotNil(t, m)
			require.Equal(t, "threads", filepath.Base(m.Path))
			require.Equal(t, fileBuildID(f), m.BuildID)
			require.Equal(t, entry, f.Entry+m.Bias)
			if f.Type == elf.ET_EXEC {
				require.Zero(t, m.Bias)
			}
		})
	}
}
