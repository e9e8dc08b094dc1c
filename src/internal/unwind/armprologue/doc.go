// Package armprologue finds how a 32-bit ARM function (ARM or Thumb-2 code) has laid out its
// frame at a given instruction, by reading its code from the function's start: the unwinder's
// last resort for code that has neither DWARF call frame information nor an ARM EHABI entry
// (hand-written or noreturn code, EXIDX_CANTUNWIND).
//
// Analyze tracks the value of every core register as "the value some register had at the
// function's entry, plus a constant" and every word stored at such an offset from the entry
// stack pointer, through push/stmdb, str/strd, sub/add, mov, vpush and the like, and stops at the
// first instruction that can change the program counter. The resulting Frame says which
// registers hold the entry stack pointer (the CFA) plus a known constant, and where the entry
// values of registers (lr: the return address) were saved.
//
// Code is untrusted input: any byte string is decoded without panicking, instructions the
// analysis does not know are skipped as gdb's prologue analyzer skips them, and the work is
// bounded by the length of the code given.
package armprologue
