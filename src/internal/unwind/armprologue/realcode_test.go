package armprologue

import (
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/require"
)

// The armhf libc of the corpus cores (Debian libc6-armhf-cross 2.36-8cross1), whose abort is
// noreturn Thumb-2 code with no unwind table entry.
const (
	sysrootLibc = "/usr/arm-linux-gnueabihf/lib/libc.so.6"
	libcBuildID = "99691551bcc5fa773b974f390398a90275f12724"
	abortStart  = 0x1e008 // abort@@GLIBC_2.4, Thumb
	abortCall   = 0x1e0ac // return address of its call to raise
)

// abortCode returns libc's code from abort's start and the offset of the return address of its
// call to raise (the pc of abort's frame in the corpus core cpp-exception/armhf), or false when
// this machine does not have that libc.
func abortCode(tb testing.TB) ([]byte, int, bool) {
	f, err := elf.Open(sysrootLibc)
	if err != nil {
		return nil, 0, false
	}
	defer f.Close()
	var id string
	for _, s := range f.Sections {
		if s.Name != ".note.gnu.build-id" {
			continue
		}
		b, err := s.Data()
		if err == nil && len(b) >= 16 {
			id = hex.EncodeToString(b[16:])
		}
	}
	if id != libcBuildID {
		return nil, 0, false
	}
	text := f.Section(".text")
	require.NotNil(tb, text)
	b, err := text.Data()
	require.NoError(tb, err)
	off := abortStart - text.Addr
	return b[off : off+4096], abortCall - abortStart, true
}

// TestLibcAbort analyses the real abort of the corpus' libc at the return address of its call
// to raise. objdump -d shows the prologue, with unrelated instructions mixed in:
//
//	1e008: ldr r2, [pc, #312]
//	1e00a: mrc 15, 0, r4, cr13, cr0, {3}
//	1e00e: ldr r3, [pc, #312]
//	1e010: sub.w r4, r4, #1280
//	1e014: add r2, pc
//	1e016: ldr r0, [pc, #308]
//	1e018: push {r7, lr}
//	1e01a: add r0, pc
//	1e01c: ldr r3, [r2, r3]
//	1e01e: sub sp, #144
//	1e020: ldr r3, [r3, #0]
//	1e022: str r3, [sp, #140]
//	1e024: mov.w r3, #0
//	1e028: ldr r3, [r0, #8]
//	1e02a: cmp r3, r4
//	1e02c: beq.n 1e050
//
// gdb's prologue analyzer reads the same: CFA = sp + 152, lr at CFA-4, r7 at CFA-8.
func TestLibcAbort(t *testing.T) {
	code, pc, ok := abortCode(t)
	if !ok {
		t.Skipf("%s with build-id %s not on this machine", sysrootLibc, libcBuildID)
	}
	f, err := Analyze(code, pc, true, binary.LittleEndian)
	require.NoError(t, err)
	require.Equal(t, 0x24, f.End)
	require.Equal(t, "branch at 0x24", f.Stop)
	require.Equal(t, uint16(1<<regSP), f.SPBased)
	require.Equal(t, int32(-152), f.SPOffset[regSP])
	require.Equal(t, uint16(1<<regR7|1<<regLR), f.Saved)
	require.Equal(t, int32(-8), f.SavedAt[regR7])
	require.Equal(t, int32(-4), f.SavedAt[regLR])
	// r4 (the thread pointer minus 0x500), r0, r2 and r3 hold new values; r5, r6 and r8-r12 were
	// not touched.
	require.Equal(t, uint16(1<<0|1<<2|1<<3|1<<4), f.Changed)

	// At its first instruction nothing is set up yet; after the push only the push counts.
	f, err = Analyze(code, 0, true, binary.LittleEndian)
	require.NoError(t, err)
	require.Equal(t, int32(0), f.SPOffset[regSP])
	require.Zero(t, f.Saved)
	f, err = Analyze(code, 0x1e01a-abortStart, true, binary.LittleEndian)
	require.NoError(t, err)
	require.Equal(t, int32(-8), f.SPOffset[regSP])
	require.Equal(t, uint16(1<<regR7|1<<regLR), f.Saved)
}
