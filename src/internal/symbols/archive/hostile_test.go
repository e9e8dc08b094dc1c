package archive

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"
)

// extractAll reads every member and extracts the regular ones into dest; refusals are
// collected, any other error ends it.
func extractAll(t *testing.T, data []byte, lim Limits, dest string) (*result, error) {
	r, err := NewReader(bytes.NewReader(data), lim)
	require.NoError(t, err)
	defer r.Close()
	res := &result{data: map[string][]byte{}}
	for {
		e, err := r.Next()
		if err == io.EOF {
			return res, nil
		}
		if errors.Is(err, ErrRefused) {
			res.refused = append(res.refused, err)
			continue
		}
		if err != nil {
			return res, err
		}
		res.entries = append(res.entries, *e)
		if _, err := r.Extract(dest); err != nil {
			if errors.Is(err, ErrRefused) {
				res.refused = append(res.refused, err)
				continue
			}
			return res, err
		}
	}
}

// hostileDir makes root/dest and a bait file root/outside-bait next to it.
func hostileDir(t *testing.T) (root, dest string) {
	root = t.TempDir()
	dest = filepath.Join(root, "dest")
	require.NoError(t, os.Mkdir(dest, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "outside-bait"), []byte("bait"), 0o644))
	return root, dest
}

func memberOf(t *testing.T, err error) *MemberError {
	var me *MemberError
	require.ErrorAs(t, err, &me)
	return me
}

// TestHostileNames: "../" and absolute names, links leaving the root. Each is refused naming the
// member, the members after it are still read, and nothing lands outside the directory.
func TestHostileNames(t *testing.T) {
	for _, tc := range []struct {
		name   string
		m      member
		reason string
		member string // as the error names it: the raw name when the name is refused
	}{
		{"dotdot", reg("../outside-evil", "x"), `".." in the name`, "../outside-evil"},
		{"dotdot-inner", reg("usr/../../outside-evil", "x"), `".." in the name`, "usr/../../outside-evil"},
		{"dotdot-harmless", reg("usr/../etc/x", "x"), `".." in the name`, "usr/../etc/x"}, // GNU tar refuses these too
		{"dot-dotdot", reg("./../outside-evil", "x"), `".." in the name`, "./../outside-evil"},
		{"absolute", reg("/etc/outside-evil", "x"), "absolute name", "/etc/outside-evil"},
		{"absolute-dir", member{name: "/usr/", typ: tar.TypeDir}, "absolute name", "/usr/"},
		{"symlink-up", member{name: "./usr/lib/up", typ: tar.TypeSymlink, link: "../../../etc/passwd"},
			`refused: symlink to "../../../etc/passwd" points outside the archive`, "usr/lib/up"},
		{"symlink-empty", member{name: "usr/lib/nothing", typ: tar.TypeSymlink}, "empty symlink target", "usr/lib/nothing"},
		{"hardlink-up", member{name: "hl", typ: tar.TypeLink, link: "../outside-bait"},
			`hard link to "../outside-bait": ".." in the name`, "hl"},
		{"hardlink-absolute", member{name: "hl", typ: tar.TypeLink, link: "/etc/passwd"}, "absolute name", "hl"},
		{"long-name", reg(strings.Repeat("a/", 3000)+"x", "x"), "name of 6001 bytes, longer than 4096", strings.Repeat("a/", 3000) + "x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, dest := hostileDir(t)
			data := goTar(t, tar.FormatPAX, reg("before", "1"), tc.m, reg("after", "2"))
			res, err := extractAll(t, data, DefaultLimits, dest)
			require.NoError(t, err)
			require.Len(t, res.refused, 1)
			err = res.refused[0]
			require.ErrorIs(t, err, ErrRefused)
			require.Contains(t, err.Error(), tc.reason)
			require.Equal(t, tc.member, memberOf(t, err).Member)
			require.Len(t, res.entries, 2)
			require.Equal(t, "1", string(readFile(t, filepath.Join(dest, "before"))))
			require.Equal(t, "2", string(readFile(t, filepath.Join(dest, "after"))))
			require.Equal(t, "bait", string(readFile(t, filepath.Join(root, "outside-bait"))))
			onlyInside(t, root, dest)
		})
	}
}

// TestSymlinksInside: links are reported, never created nor followed; absolute targets are
// inside the image.
func TestSymlinksInside(t *testing.T) {
	root, dest := hostileDir(t)
	data := goTar(t, tar.FormatGNU,
		member{name: "lib", typ: tar.TypeSymlink, link: root}, // "root" is absolute: inside the image
		reg("lib/evil", "through the link?"),                  // lands in dest/lib, a real directory
		member{name: "abs", typ: tar.TypeSymlink, link: "/../../etc/./passwd"},
		member{name: "usr/bin/sh", typ: tar.TypeSymlink, link: "../../bin/busybox"},
		member{name: "usr/bin/hard", typ: tar.TypeLink, link: "./usr/bin/sh"},
	)
	res, err := extractAll(t, data, DefaultLimits, dest)
	require.NoError(t, err)
	require.Len(t, res.refused, 4, "links are not extracted")
	for _, err := range res.refused {
		require.ErrorIs(t, err, ErrRefused)
		require.Contains(t, err.Error(), "link: only regular files are extracted")
	}
	links := map[string]string{}
	for _, e := range res.entries {
		links[e.Name] = e.Linkname
	}
	require.Equal(t, map[string]string{
		"lib":          strings.TrimPrefix(root, "/"),
		"lib/evil":     "",
		"abs":          "etc/passwd",
		"usr/bin/sh":   "bin/busybox",
		"usr/bin/hard": "usr/bin/sh",
	}, links)
	require.Equal(t, "through the link?", string(readFile(t, filepath.Join(dest, "lib", "evil"))))
	onlyInside(t, root, dest)
}

// TestSymlinkInDirectory: a symbolic link already in the directory is never followed.
func TestSymlinkInDirectory(t *testing.T) {
	root, dest := hostileDir(t)
	outside := filepath.Join(root, "outside-dir")
	require.NoError(t, os.Mkdir(outside, 0o755))
	require.NoError(t, os.Symlink(outside, filepath.Join(dest, "usr")))
	require.NoError(t, os.Symlink(filepath.Join(root, "outside-bait"), filepath.Join(dest, "file")))
	data := goTar(t, tar.FormatPAX, reg("usr/lib/libc.so", "evil"), reg("file", "replaces the link"))
	res, err := extractAll(t, data, DefaultLimits, dest)
	require.NoError(t, err)
	require.Len(t, res.refused, 1)
	require.ErrorIs(t, res.refused[0], ErrRefused)
	require.Contains(t, res.refused[0].Error(), `member "usr/lib/libc.so": refused: usr is a symbolic link; it is never followed`)
	entries, err := os.ReadDir(outside)
	require.NoError(t, err)
	require.Empty(t, entries)
	require.Equal(t, "bait", string(readFile(t, filepath.Join(root, "outside-bait"))))
	fi, err := os.Lstat(filepath.Join(dest, "file"))
	require.NoError(t, err)
	require.True(t, fi.Mode().IsRegular(), "the link was replaced, not written through")
	require.Equal(t, "replaces the link", string(readFile(t, filepath.Join(dest, "file"))))
}

// TestDeviceNodes: reported with their type, never created.
func TestDeviceNodes(t *testing.T) {
	root, dest := hostileDir(t)
	data := goTar(t, tar.FormatUSTAR,
		member{name: "dev/console", typ: tar.TypeChar},
		member{name: "dev/sda", typ: tar.TypeBlock},
		member{name: "run/fifo", typ: tar.TypeFifo},
		member{name: "dev", typ: tar.TypeDir},
	)
	res, err := extractAll(t, data, DefaultLimits, dest)
	require.NoError(t, err)
	require.Len(t, res.entries, 4)
	require.Len(t, res.refused, 4)
	for i, why := range []string{"character device node", "block device node", "fifo", "directory"} {
		require.ErrorIs(t, res.refused[i], ErrRefused)
		require.Contains(t, res.refused[i].Error(), why+": only regular files are extracted")
	}
	entries, err := os.ReadDir(dest)
	require.NoError(t, err)
	require.Empty(t, entries)
	onlyInside(t, root, dest)
}

// TestMemberLargerThanHeader: a header says 10 bytes, 1500 follow. archive/tar reads the 11th
// byte's block as the next header and reports tar.ErrHeader; the error names the member.
func TestMemberLargerThanHeader(t *testing.T) {
	var data []byte
	data = append(data, ustarHeader("big", tar.TypeReg, 10)...)
	data = append(data, pad(bytes.Repeat([]byte("A"), 1500))...)
	data = append(data, ustarHeader("next", tar.TypeReg, 0)...)
	data = append(data, make([]byte, 1024)...)

	for _, kind := range []Kind{None, Zstd} {
		t.Run(kind.String(), func(t *testing.T) {
			res, err := readBytes(t, goCompress(t, kind, data), DefaultLimits)
			require.ErrorIs(t, err, ErrCorrupt)
			me := memberOf(t, err)
			require.Equal(t, "big", me.Member)
			require.True(t, me.After)
			require.Equal(t, `after member "big": corrupt archive: invalid tar header after the member's 10 bytes: `+
				`the member is larger than its header says, or the stream is damaged`, err.Error())
			require.Len(t, res.entries, 1)
		})
	}

	// The excess is zeros: archive/tar sees the end-of-archive marker early; what follows it is
	// not zero padding.
	zeros := append(ustarHeader("big", tar.TypeReg, 10), pad([]byte("0123456789"))...)
	zeros = append(zeros, make([]byte, 2048)...)
	zeros = append(zeros, ustarHeader("next", tar.TypeReg, 0)...)
	zeros = append(zeros, make([]byte, 1024)...)
	_, err := readBytes(t, zeros, DefaultLimits)
	require.ErrorIs(t, err, ErrCorrupt)
	require.Equal(t, `after member "big": corrupt archive: data after the end-of-archive marker`, err.Error())
}

// TestTruncated: a member shorter than its header, a stream cut anywhere, a tar without its
// end-of-archive marker: each an error naming the member.
func TestTruncated(t *testing.T) {
	short := append(ustarHeader("short", tar.TypeReg, 5000), pad(bytes.Repeat([]byte("B"), 100))...)
	res, err := readBytes(t, short, DefaultLimits)
	require.ErrorIs(t, err, ErrTruncated)
	require.Equal(t, `member "short": truncated archive: the stream ends after 512 of the member's 5000 bytes`, err.Error())
	require.Empty(t, res.data)

	two := goTar(t, tar.FormatPAX, reg("a", "1"), reg("b", "2"))
	_, err = readBytes(t, two[:len(two)-1024], DefaultLimits)
	require.ErrorIs(t, err, ErrTruncated)
	require.Equal(t, `after member "b": truncated archive: the archive ends without its end-of-archive marker`, err.Error())
	_, err = readBytes(t, two[:len(two)-512], DefaultLimits)
	require.ErrorIs(t, err, ErrTruncated)
	_, err = readBytes(t, nil, DefaultLimits)
	require.ErrorIs(t, err, ErrTruncated)
	require.Equal(t, "truncated archive: empty file", err.Error())
	_, err = readBytes(t, goCompress(t, Gzip, nil), DefaultLimits)
	require.Equal(t, "truncated archive: the gzip stream is empty", err.Error())
	_, err = readBytes(t, bytes.Repeat([]byte("hello, world: not a tarball, not compressed either\n"), 20), DefaultLimits)
	require.ErrorIs(t, err, ErrCorrupt)
	require.Equal(t, "corrupt archive: not a tar archive (no known compression, no tar header at the start)", err.Error())
	_, err = readBytes(t, goCompress(t, Zstd, bytes.Repeat([]byte("not a tarball "), 100)), DefaultLimits)
	require.Equal(t, "corrupt archive: the zstd stream does not hold a tar archive (no tar header at the start)", err.Error())

	elf := readFile(t, filepath.Join(corpus, "c-static", "x86_64", "c-static"))
	plain := goTar(t, tar.FormatGNU, reg("small", "s"), member{name: "usr/bin/c-static", typ: tar.TypeReg, data: elf}, reg("z", "z"))
	for _, c := range cliCompressors {
		full := cliCompress(t, c.cmd, plain)
		for _, mode := range []string{"go", "default"} {
			t.Run(c.name+"/"+mode, func(t *testing.T) {
				var opts []Option
				if mode == "go" {
					opts = append(opts, PureGo())
				}
				for _, cut := range []int{len(full) / 2, len(full) - 700, len(full) - 1} {
					res, err := readBytes(t, full[:cut], DefaultLimits, opts...)
					if c.kind == Bzip2 && mode == "default" {
						// lbzip2's complaint does not tell a truncation from damage
						require.True(t, isTruncOrCorrupt(err), "cut at %d: %v", cut, err)
					} else {
						require.ErrorIs(t, err, ErrTruncated, "cut at %d", cut)
					}
					// bzip2 -9 makes one 900 kB block: half of it decodes to nothing
					if cut == len(full)/2 && c.name != "bzip2" {
						me := memberOf(t, err)
						require.Equal(t, "usr/bin/c-static", me.Member, "%v", err)
						require.NotContains(t, res.data, "usr/bin/c-static")
					}
				}
			})
		}
	}
}

// TestCorrupt: damaged compressed data is an error, never a panic or silent success.
func TestCorrupt(t *testing.T) {
	elf := readFile(t, filepath.Join(corpus, "c-static", "x86_64", "c-static"))
	plain := goTar(t, tar.FormatGNU, member{name: "usr/bin/c-static", typ: tar.TypeReg, data: elf})
	for _, c := range cliCompressors[1:] {
		full := cliCompress(t, c.cmd, plain)
		for _, mode := range []string{"go", "default"} {
			t.Run(c.name+"/"+mode, func(t *testing.T) {
				var opts []Option
				if mode == "go" {
					opts = append(opts, PureGo())
				}
				for _, at := range []int{len(full) / 3, len(full) / 2, len(full) - 3} {
					bad := bytes.Clone(full)
					bad[at] ^= 0x55
					_, err := readBytes(t, bad, DefaultLimits, opts...)
					require.True(t, isTruncOrCorrupt(err), "flip at %d of %d: %v", at, len(full), err)
				}
			})
		}
	}
	// After the end-of-archive marker, a damaged checksum is still found.
	gz := goCompress(t, Gzip, goTar(t, tar.FormatPAX, reg("a", "a")))
	gz[len(gz)-6] ^= 1 // the CRC32 in the gzip trailer
	_, err := readBytes(t, gz, DefaultLimits, PureGo())
	require.ErrorIs(t, err, ErrCorrupt)
	require.Contains(t, err.Error(), `after member "a": corrupt archive: compress/gzip: gzip: invalid checksum`)
}

// zeroTar is a tar whose one member is n zero bytes, streamed into w.
func zeroTar(t *testing.T, w io.Writer, n int64) {
	tw := tar.NewWriter(w)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "zeros", Typeflag: tar.TypeReg, Size: n, Mode: 0o644}))
	_, err := io.CopyN(tw, zeroReader{}, n)
	require.NoError(t, err)
	require.NoError(t, tw.Close())
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestBombRatio: 1 GiB of zeros in 40 KiB of zstd, with DefaultLimits: refused by MaxRatio long
// before the gigabyte, whether the member is read or skipped.
func TestBombRatio(t *testing.T) {
	var b bytes.Buffer
	zw, err := zstd.NewWriter(&b, zstd.WithEncoderLevel(zstd.SpeedFastest))
	require.NoError(t, err)
	zeroTar(t, zw, 1<<30)
	require.NoError(t, zw.Close())
	bomb := goTar(t, tar.FormatPAX, reg("first", "ok"))
	bomb = append(cliCompress(t, []string{"zstd", "-q", "-c"}, bomb[:len(bomb)-1024]), b.Bytes()...) // two frames
	t.Logf("bomb: %d bytes", len(bomb))
	for _, read := range []bool{true, false} {
		r, err := NewReader(bytes.NewReader(bomb), DefaultLimits)
		require.NoError(t, err)
		e, err := r.Next()
		require.NoError(t, err)
		require.Equal(t, "first", e.Name)
		e, err = r.Next()
		require.NoError(t, err)
		require.Equal(t, "zeros", e.Name)
		if read {
			_, err = io.Copy(io.Discard, r)
		} else {
			_, err = r.Next()
		}
		require.ErrorIs(t, err, ErrLimit)
		require.Contains(t, err.Error(), `member "zeros": limit exceeded: decompression bomb:`)
		// The whole bomb is read ahead at once: the ratio trips at 500 times its size.
		require.Less(t, r.DecompressedBytes(), int64(500*len(bomb)+1<<20))
		require.NoError(t, r.Close())
	}
}

// TestBombEachCompression: every decoder stops at MaxRatio.
func TestBombEachCompression(t *testing.T) {
	var plain bytes.Buffer
	zeroTar(t, &plain, 8<<20)
	lim := DefaultLimits
	lim.MaxRatio = 50
	for _, c := range cliCompressors[1:] {
		if strings.Contains(c.name, "-") || c.name == "pbzip2" {
			continue
		}
		data := cliCompress(t, c.cmd, plain.Bytes())
		t.Run(c.name, func(t *testing.T) {
			_, err := readBytes(t, data, lim, PureGo())
			require.ErrorIs(t, err, ErrLimit)
			require.Contains(t, err.Error(), "decompression bomb")
		})
	}
}

func TestLimits(t *testing.T) {
	random := make([]byte, 3<<20)
	for i := range random {
		random[i] = byte(i*7919>>3) ^ byte(i>>11)
	}
	t.Run("MaxTotal", func(t *testing.T) {
		_, err := readBytes(t, goTar(t, tar.FormatPAX, member{name: "r", typ: tar.TypeReg, data: random}), Limits{MaxTotal: 1 << 20})
		require.ErrorIs(t, err, ErrLimit)
		require.Contains(t, err.Error(), `member "r": limit exceeded: more than 1048576 bytes decompressed (MaxTotal)`)
	})
	t.Run("MaxMember", func(t *testing.T) {
		res, err := readBytes(t, goTar(t, tar.FormatPAX, reg("a", "a"), member{name: "r", typ: tar.TypeReg, data: random}, reg("b", "b")),
			Limits{MaxMember: 1 << 20})
		require.NoError(t, err, "a refused member is skipped")
		require.Len(t, res.refused, 1)
		require.ErrorIs(t, res.refused[0], ErrRefused)
		require.ErrorIs(t, res.refused[0], ErrLimit)
		require.Equal(t, `member "r": refused: limit exceeded: 3145728 bytes, more than MaxMember (1048576)`, res.refused[0].Error())
		require.Equal(t, map[string][]byte{"a": []byte("a"), "b": []byte("b")}, res.data)
	})
	t.Run("MaxEntries", func(t *testing.T) {
		var ms []member
		for i := 0; i < 20; i++ {
			ms = append(ms, reg("f"+strings.Repeat("x", i), ""))
		}
		res, err := readBytes(t, goTar(t, tar.FormatUSTAR, ms...), Limits{MaxEntries: 10})
		require.ErrorIs(t, err, ErrLimit)
		require.Contains(t, err.Error(), "more than 10 entries (MaxEntries)")
		require.Len(t, res.entries, 10)
	})
}

// TestSparseBomb: GNU tar stores a 1 TiB sparse file in a few blocks. MaxMember refuses it by its
// header; without MaxMember, reading it stops at MaxTotal.
func TestSparseBomb(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "huge"))
	require.NoError(t, err)
	_, err = f.WriteAt([]byte("end"), 1<<40-3)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.NoError(t, os.WriteFile(filepath.Join(dir, "small"), []byte("small"), 0o644))
	for _, format := range []string{"gnu", "pax"} {
		t.Run(format, func(t *testing.T) {
			data := gnuTar(t, dir, "--format="+format, "--sparse")
			require.Less(t, len(data), 1<<20)
			res, err := readBytes(t, data, DefaultLimits)
			require.NoError(t, err)
			require.Len(t, res.refused, 1)
			require.Contains(t, res.refused[0].Error(), `member "huge": refused: limit exceeded: 1099511627776 bytes, more than MaxMember`)
			require.Equal(t, "small", string(res.data["small"]))

			r, err := NewReader(bytes.NewReader(data), Limits{MaxTotal: 64 << 20})
			require.NoError(t, err)
			defer r.Close()
			for {
				e, err := r.Next()
				require.NoError(t, err)
				if e.Name == "huge" {
					break
				}
			}
			_, err = io.Copy(io.Discard, r)
			require.ErrorIs(t, err, ErrLimit)
			require.Contains(t, err.Error(), `member "huge": limit exceeded: more than 67108864 member bytes read (MaxTotal)`)
		})
	}
}

// TestXZDictionaryBomb: an xz block header asking for a 192 MiB dictionary (patched into a real
// file, CRC32 fixed) is refused before the decoder allocates it.
func TestXZDictionaryBomb(t *testing.T) {
	data := cliCompress(t, []string{"xz", "-0", "-c"}, goTar(t, tar.FormatPAX, reg("a", strings.Repeat("a", 5000))))
	// Stream header (12 bytes), then the block header: size byte, flags, [sizes], filter flags
	// 0x21 0x01 <dict>, padding, CRC32.
	hs := (int(data[12]) + 1) * 4
	hdr := data[12 : 12+hs]
	i := bytes.Index(hdr, []byte{0x21, 0x01})
	require.Greater(t, i, 0)
	hdr[i+2] = 31 // 3 << (31/2 + 11) = 192 MiB
	binary.LittleEndian.PutUint32(hdr[hs-4:], crc32.ChecksumIEEE(hdr[:hs-4]))

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := readBytes(t, data, DefaultLimits, PureGo())
	runtime.ReadMemStats(&after)
	require.ErrorIs(t, err, ErrLimit)
	require.Contains(t, err.Error(), "xz block 1: limit exceeded: xz dictionary of 192 MiB, more than MaxWindow (128 MiB)")
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<20))

	// With xz itself decoding (when installed), the guard in front refuses the same way.
	_, err = readBytes(t, data, DefaultLimits)
	require.ErrorIs(t, err, ErrLimit)
	require.Contains(t, err.Error(), "xz dictionary of 192 MiB, more than MaxWindow (128 MiB)")

	// The same with the limit raised decodes (the patched size is a valid one).
	_, err = readBytes(t, data, Limits{MaxWindow: 256 << 20}, PureGo())
	require.NoError(t, err)
}

// TestZstdWindowBomb: a zstd frame header declaring a 2 GiB window.
func TestZstdWindowBomb(t *testing.T) {
	plain := goTar(t, tar.FormatPAX, reg("a", "a"))
	// zstd writes a window descriptor (no single-segment flag) when it does not know the size.
	data := run(t, plain, "sh", "-c", "cat | zstd -q -c --no-content-size")
	require.Equal(t, byte(0), data[4]&0x20, "frame without single-segment flag")
	data[5] = 21 << 3 // window log 10+21 = 31
	_, err := readBytes(t, data, DefaultLimits, PureGo())
	require.ErrorIs(t, err, ErrLimit)
	require.Contains(t, err.Error(), "window is larger than MaxWindow")
}
