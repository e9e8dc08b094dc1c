package cfi

import (
	"encoding/binary"
)

// Builders of hand-made sections for the table tests.

func uleb(v uint64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func sleb(v int64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 && c&0x40 == 0 || v == -1 && c&0x40 != 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func u16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
func u32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// withLength prefixes a body with its 32-bit length, padding the body to align.
func withLength(body []byte, align int) []byte {
	for (len(body)+4)%align != 0 {
		body = append(body, cfaNop)
	}
	return cat(u32(uint32(len(body))), body)
}

// ehCIE is a .eh_frame CIE: version 1, augmentation "zR" with FDE encoding enc, code
// alignment 1, data alignment -8, return address column 16 (x86-64).
func ehCIE(enc byte, initial []byte) []byte {
	return withLength(cat(u32(0), []byte{1}, []byte("zR\x00"), uleb(1), sleb(-8), uleb(16), uleb(1), []byte{enc}, initial), 8)
}

// ehFDE is a .eh_frame FDE at section offset off, for the CIE at offset 0, with udata4
// absolute addresses (encoding 0x03) and no augmentation data.
func ehFDE(off int, start, length uint32, insns []byte) []byte {
	return withLength(cat(u32(uint32(off+4)), u32(start), u32(length), uleb(0), insns), 8)
}

var le = binary.LittleEndian

func cfg64() Config { return Config{Order: le, AddrSize: 8} }

// oneFDE builds a section with one CIE (initial instructions cie) and one FDE covering
// [0x1000, 0x1100) with instructions fde.
func oneFDE(cie, fde []byte) []byte {
	c := ehCIE(PEUdata4, cie)
	return cat(c, ehFDE(len(c), 0x1000, 0x100, fde), u32(0))
}
