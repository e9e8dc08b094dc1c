package protocol

import (
	"encoding/binary"
	"fmt"
	"math"
)

// CBOR (RFC 8949) encoding of the few types the Memfault notes use: unsigned and negative
// integers, text strings, arrays, maps with definite lengths, null and booleans. Map entries are
// written in the order given, which is what makes the notes byte-for-byte reproducible.

// CBORMap is a map whose entries keep their order.
type CBORMap []CBOREntry

// CBOREntry is one key/value pair; keys are ints or strings.
type CBOREntry struct {
	Key   any
	Value any
}

// MarshalCBOR encodes v, which may be nil, bool, any integer type, string, []string, []any or
// CBORMap.
func MarshalCBOR(v any) ([]byte, error) {
	return appendCBOR(nil, v)
}

func appendHead(b []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(b, m|byte(n))
	case n <= math.MaxUint8:
		return append(b, m|24, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, m|25), uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, m|26), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, m|27), n)
}

func appendInt(b []byte, v int64) []byte {
	if v >= 0 {
		return appendHead(b, 0, uint64(v))
	}
	return appendHead(b, 1, uint64(-(v + 1)))
}

func appendCBOR(b []byte, v any) ([]byte, error) {
	var err error
	switch x := v.(type) {
	case nil:
		return append(b, 0xf6), nil
	case bool:
		if x {
			return append(b, 0xf5), nil
		}
		return append(b, 0xf4), nil
	case int:
		return appendInt(b, int64(x)), nil
	case int64:
		return appendInt(b, x), nil
	case uint32:
		return appendHead(b, 0, uint64(x)), nil
	case uint64:
		return appendHead(b, 0, x), nil
	case string:
		return append(appendHead(b, 3, uint64(len(x))), x...), nil
	case []string:
		b = appendHead(b, 4, uint64(len(x)))
		for _, s := range x {
			b = append(appendHead(b, 3, uint64(len(s))), s...)
		}
		return b, nil
	case []any:
		b = appendHead(b, 4, uint64(len(x)))
		for _, e := range x {
			if b, err = appendCBOR(b, e); err != nil {
				return nil, err
			}
		}
		return b, nil
	case CBORMap:
		b = appendHead(b, 5, uint64(len(x)))
		for _, e := range x {
			if b, err = appendCBOR(b, e.Key); err != nil {
				return nil, err
			}
			if b, err = appendCBOR(b, e.Value); err != nil {
				return nil, err
			}
		}
		return b, nil
	}
	return nil, fmt.Errorf("cbor: cannot encode %T", v)
}
