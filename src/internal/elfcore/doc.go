// Package elfcore reads and writes Linux ELF core files.
//
// It has three parts, all container-agnostic and shared by the device and the server:
//
//   - ReadCore reads a core from a forward-only stream (the kernel's core_pattern pipe): the ELF
//     header, the program headers and the note data, and stops there. It never seeks and never
//     reads segment contents, so its cost does not depend on the size of the crashed process.
//   - The note decoders (ParseNotes, Process) turn note bytes into typed values: per-thread
//     registers (keyed by ELF machine, not by the host's GOARCH), signal information, the
//     auxiliary vector and the file mappings.
//   - Plan and Write turn a Layout (header, notes, segments) into a new core, deciding every
//     offset before the first byte so the output can be streamed through a compressor.
//
// Input is untrusted: every count and size is bounded before anything is allocated, every short
// read is an error, and the byte order comes from the file.
package elfcore
