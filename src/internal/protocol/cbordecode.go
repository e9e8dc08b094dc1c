package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// UnmarshalCBOR decodes one CBOR data item of the subset MarshalCBOR writes (plus byte strings
// and floats, which other writers may use). Maps decode to CBORMap, arrays to []any, integers to
// int64 (or uint64 when above math.MaxInt64), text to string, bytes to []byte. Input is
// untrusted: lengths are checked against the remaining bytes before allocation and nesting is
// bounded.
func UnmarshalCBOR(b []byte) (any, error) {
	d := cborDecoder{b: b}
	v, err := d.item(0)
	if err != nil {
		return nil, err
	}
	if d.off != len(b) {
		return nil, fmt.Errorf("cbor: %d trailing bytes", len(b)-d.off)
	}
	return v, nil
}

var errCBORShort = errors.New("cbor: unexpected end of data")

type cborDecoder struct {
	b   []byte
	off int
}

const maxCBORDepth = 32

func (d *cborDecoder) head() (major byte, info byte, n uint64, err error) {
	if d.off >= len(d.b) {
		return 0, 0, 0, errCBORShort
	}
	c := d.b[d.off]
	d.off++
	major, info = c>>5, c&0x1f
	switch {
	case info < 24:
		return major, info, uint64(info), nil
	case info <= 27:
		size := 1 << (info - 24)
		if len(d.b)-d.off < size {
			return 0, 0, 0, errCBORShort
		}
		p := d.b[d.off : d.off+size]
		d.off += size
		switch size {
		case 1:
			n = uint64(p[0])
		case 2:
			n = uint64(binary.BigEndian.Uint16(p))
		case 4:
			n = uint64(binary.BigEndian.Uint32(p))
		default:
			n = binary.BigEndian.Uint64(p)
		}
		return major, info, n, nil
	}
	return 0, 0, 0, fmt.Errorf("cbor: unsupported additional information %d at offset %d", info, d.off-1)
}

func (d *cborDecoder) item(depth int) (any, error) {
	if depth > maxCBORDepth {
		return nil, errors.New("cbor: nested too deeply")
	}
	major, info, n, err := d.head()
	if err != nil {
		return nil, err
	}
	switch major {
	case 0:
		if n > math.MaxInt64 {
			return n, nil
		}
		return int64(n), nil
	case 1:
		if n > math.MaxInt64 {
			return nil, errors.New("cbor: negative integer out of range")
		}
		return -1 - int64(n), nil
	case 2, 3:
		if n > uint64(len(d.b)-d.off) {
			return nil, errCBORShort
		}
		s := d.b[d.off : d.off+int(n)]
		d.off += int(n)
		if major == 2 {
			return append([]byte(nil), s...), nil
		}
		return string(s), nil
	case 4:
		if n > uint64(len(d.b)-d.off) { // every item takes at least one byte
			return nil, errCBORShort
		}
		out := make([]any, 0, n)
		for i := uint64(0); i < n; i++ {
			v, err := d.item(depth + 1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case 5:
		if n > uint64(len(d.b)-d.off)/2 {
			return nil, errCBORShort
		}
		out := make(CBORMap, 0, n)
		for i := uint64(0); i < n; i++ {
			k, err := d.item(depth + 1)
			if err != nil {
				return nil, err
			}
			v, err := d.item(depth + 1)
			if err != nil {
				return nil, err
			}
			out = append(out, CBOREntry{Key: k, Value: v})
		}
		return out, nil
	case 7:
		switch {
		case info == 20:
			return false, nil
		case info == 21:
			return true, nil
		case info == 22 || info == 23:
			return nil, nil
		case info == 26:
			return float64(math.Float32frombits(uint32(n))), nil
		case info == 27:
			return math.Float64frombits(n), nil
		}
	}
	return nil, fmt.Errorf("cbor: unsupported item (major %d, info %d) at offset %d", major, info, d.off)
}

// Get returns the value of a key in the map.
func (m CBORMap) Get(key any) (any, bool) {
	for _, e := range m {
		if e.Key == key {
			return e.Value, true
		}
	}
	return nil, false
}
