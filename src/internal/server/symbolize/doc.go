// Package symbolize turns link-time addresses of one ELF file into source
// frames (function, file, line, inlined calls), as gdb would print them.
//
// It reads DWARF 2-5 (the walks over a unit's DIEs with its own decoder,
// die.go; single DIEs through the standard library's debug/dwarf; line
// programs with its own decoder), compressed debug sections
// (SHF_COMPRESSED zlib/zstd and .zdebug), split debug files made by
// objcopy --only-keep-debug, and falls back to .symtab/.dynsym. Names are
// gdb's: C++ functions named from DWARF as gdb composes and canonicalizes
// them (cxxname.go, cpname.go), symbols demangled for C++ and Rust (legacy
// and v0).
//
// Trust: the input may be hostile. Every size and count read from the file is
// checked against the bytes present before it is used to allocate;
// decompressed sections are limited to maxCompressionRatio times their
// compressed size and maxDebugBytes in total. Malformed data is an error,
// never a panic. Work per Lookup is logarithmic in the unit's tables except
// where ranges overlap, which is linear in the overlapping ranges.
//
// Indexes: big DWARF sections are read on demand and forward (streams that
// keep a window and checkpoints, not what lies in front of the units in
// use); units are found through .debug_aranges when the file has it, else
// every unit's ranges are read on the first lookup; each unit's line table
// and functions are built on the first lookup inside it, each function's
// inlined calls on the first lookup inside that function, and cached. See
// README.md for how, and for the rules taken from gdb.
package symbolize
