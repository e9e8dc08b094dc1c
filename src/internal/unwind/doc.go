// Package unwind walks the stacks of a crashed process: from a thread's registers (the
// NT_PRSTATUS of a core) and read access to its memory, it finds the program counter of every
// frame, with the call frame information of each mapped ELF file (.eh_frame, .debug_frame, ARM
// exidx; see package cfi), falling back to the analysis of a 32-bit ARM function's prologue
// (package armprologue) and to frame pointers where a pc has none.
//
// It is shared by the server (memory from a stored core) and the device (memory from
// /proc/<pid>/mem), so it imports neither; architectures are keyed by the core's ELF machine,
// never by the host's GOARCH. Modules come from the core (ModulesFromCore: NT_FILE mappings,
// load bias and GNU build-id read from the ELF headers the core holds); the caller attaches the
// Tables of each module's ELF file by build-id.
//
// Input is untrusted: register values, memory and tables can be anything. The walk is bounded
// by Options.MaxFrames, detects loops and stacks that do not advance, and ends with a Stop
// reason in words instead of an error.
package unwind
