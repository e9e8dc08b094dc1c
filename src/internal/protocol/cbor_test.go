package protocol

import (
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/require"
)

// Encodings from RFC 8949 appendix A.
func TestCBORKnownEncodings(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{0, "00"}, {23, "17"}, {24, "1818"}, {100, "1864"}, {1000, "1903e8"}, {1000000, "1a000f4240"},
		{int64(1000000000000), "1b000000e8d4a51000"}, {-1, "20"}, {-1000, "3903e7"},
		{"", "60"}, {"IETF", "6449455446"}, {"\u00fc", "62c3bc"},
		{nil, "f6"}, {true, "f5"}, {false, "f4"},
		{[]any{1, []any{2, 3}}, "8201820203"},
		{CBORMap{{"a", 1}, {"b", []any{2, 3}}}, "a26161016162820203"},
	} {
		b, err := MarshalCBOR(tc.v)
		require.NoError(t, err)
		require.Equal(t, tc.want, hex.EncodeToString(b), "%#v", tc.v)
		back, err := UnmarshalCBOR(b)
		require.NoError(t, err)
		again, err := MarshalCBOR(back)
		require.NoError(t, err)
		require.Equal(t, b, again)
	}
}

func TestMetadataNote(t *testing.T) {
	m := CoreMetadata{SDKVersion: "1.0", CapturedTime: 1234, DeviceSerial: "12345678", HardwareVersion: "evt",
		SoftwareType: "main", SoftwareVersion: "1.0.0", Cmdline: "binary\x00-a",
		Strategy: CaptureStrategy{Type: "threads", MaxThreadSizeKiB: 32}}
	v, err := UnmarshalCBOR(m.MarshalCBOR())
	require.NoError(t, err)
	mm := v.(CBORMap)
	require.Len(t, mm, 10)
	for i, e := range mm {
		require.Equal(t, int64(i+1), e.Key)
	}
	s, _ := mm.Get(int64(9))
	require.Equal(t, CBORMap{{"type", "threads"}, {"max_thread_size_kib", int64(32)}}, s)
	logs, _ := mm.Get(int64(10))
	require.Nil(t, logs)

	m.Strategy = CaptureStrategy{Type: "kernel_selection"}
	m.AppLogs = []string{`{"ts":"x","data":{"MESSAGE":"m"}}`}
	v, err = UnmarshalCBOR(m.MarshalCBOR())
	require.NoError(t, err)
	s, _ = v.(CBORMap).Get(int64(9))
	require.Equal(t, CBORMap{{"type", "kernel_selection"}}, s)
	logs, _ = v.(CBORMap).Get(int64(10))
	require.Equal(t, CBORMap{{"logs", []any{m.AppLogs[0]}}, {"format", CBORMap{{"id", "v1"}, {"serialization", "json-lines"}}}}, logs)
}

func TestCBORRejectsHostileInput(t *testing.T) {
	for _, in := range []string{"", "9bffffffffffffffff", "7a7fffffff61", "bb0000000100000000", "1c", "8181818181818181818181818181818181818181818181818181818181818181818101"} {
		b, _ := hex.DecodeString(in)
		_, err := UnmarshalCBOR(b)
		require.Error(t, err, in)
	}
}
