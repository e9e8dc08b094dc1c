// Package archive reads tarballs as streams: the rootfs and -dbg tarballs of a Yocto image and
// plain archives of ELF files, uncompressed or compressed with gzip, bzip2, xz or zstd (detected
// by magic bytes, never by file name).
//
// A Reader yields one Entry per member with a cleaned name relative to the archive root, lets the
// caller read the current member's bytes, and can extract a regular member into a directory.
//
// Input is untrusted. Names and link targets that leave the archive root (absolute names, "..")
// are refused with an error naming the member; device nodes and fifos are reported but never
// created; Extract walks the directory with O_NOFOLLOW at every component and never follows a
// symbolic link, whether it came from the archive or was already in the directory; a member
// larger or smaller than its header says, a truncated stream or a corrupt compressed stream is an
// error naming the member; Limits bound the bytes decompressed (in total, per member and as a
// ratio to the compressed bytes), the number of members and the decoders' window memory.
//
// Decompression is pure Go (compress/gzip, compress/bzip2, github.com/ulikunitz/xz,
// github.com/klauspost/compress/zstd), except that lbzip2 and xz, when installed, decode bzip2
// and xz streams in a subprocess: they are several times faster than the Go decoders (README.md
// has the measurements). PureGo turns this off. The limits hold either way: the compressed bytes
// go through the Reader to the program and the decompressed bytes come back through it.
package archive
