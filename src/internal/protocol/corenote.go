package protocol

// The notes memfaultd adds to a core, named "Memfault". The metadata note associates the core
// with a device and a software version; the debug note carries the handler's own log lines.
const (
	MemfaultNoteName      = "Memfault"
	MetadataNoteType      = 0x4154454d
	DebugNoteType         = 0x4154454e
	MetadataSchemaVersion = 1
)

// CaptureStrategy as recorded in the metadata note (key 9).
type CaptureStrategy struct {
	Type             string // "threads", "kernel_selection" or "stacktrace"
	MaxThreadSizeKiB uint64 // threads only
}

// CoreMetadata is the payload of the metadata note.
type CoreMetadata struct {
	SDKVersion      string
	CapturedTime    int64 // unix seconds
	DeviceSerial    string
	HardwareVersion string
	SoftwareType    string
	SoftwareVersion string
	Cmdline         string // arguments separated by NUL bytes, as in /proc/<pid>/cmdline
	Strategy        CaptureStrategy
	AppLogs         []string // JSON lines; nil encodes as null
}

// MarshalCBOR encodes the metadata as a CBOR map with integer keys 1 to 10 in order.
func (m *CoreMetadata) MarshalCBOR() []byte {
	strategy := CBORMap{{"type", m.Strategy.Type}}
	if m.Strategy.Type == "threads" {
		strategy = append(strategy, CBOREntry{"max_thread_size_kib", m.Strategy.MaxThreadSizeKiB})
	}
	var logs any
	if m.AppLogs != nil {
		logs = CBORMap{
			{"logs", m.AppLogs},
			{"format", CBORMap{{"id", "v1"}, {"serialization", "json-lines"}}},
		}
	}
	b, err := MarshalCBOR(CBORMap{
		{1, MetadataSchemaVersion},
		{2, m.SDKVersion},
		{3, m.CapturedTime},
		{4, m.DeviceSerial},
		{5, m.HardwareVersion},
		{6, m.SoftwareType},
		{7, m.SoftwareVersion},
		{8, m.Cmdline},
		{9, strategy},
		{10, logs},
	})
	if err != nil {
		panic(err) // only fixed types above: unreachable
	}
	return b
}

// DebugNote encodes the debug note: {"schema_version": 1, "capture_logs": [...]}.
func DebugNote(captureLogs []string) []byte {
	if captureLogs == nil {
		captureLogs = []string{}
	}
	b, err := MarshalCBOR(CBORMap{{"schema_version", 1}, {"capture_logs", captureLogs}})
	if err != nil {
		panic(err)
	}
	return b
}
