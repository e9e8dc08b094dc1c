// Package cfi decodes call frame information: the DWARF tables (.eh_frame, .eh_frame_hdr,
// .debug_frame) that say, for every instruction of a function, how to find its caller's
// registers, and the ARM EHABI tables (.ARM.exidx, .ARM.extab) that 32-bit ARM libraries carry
// instead.
//
// The package takes section bytes and addresses and never reads an ELF file itself, so it works
// the same on the server (symbol files) and on a device (its own libraries). A section is parsed
// once into a Table sorted by address (FDEFor is a binary search); the row of the CFA program for
// one pc is computed on demand by running the CIE's initial instructions and the FDE's
// instructions up to that pc (RowAt). Expressions are evaluated by Eval against caller-supplied
// register and memory access.
//
// Input is untrusted: every length and count is checked against the bytes that hold it, each CIE
// and FDE is decoded inside its own bounded slice, the remember_state stack and the expression
// stack have fixed depths and expressions a step budget. Malformed input gives a *DecodeError
// naming the section and offset, never a panic. A pc that no entry covers gives ErrNoFDE, which
// callers use to fall back to another method.
//
// See README.md for the formats and what is not supported.
package cfi
