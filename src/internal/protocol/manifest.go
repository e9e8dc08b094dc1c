package protocol

import "encoding/json"

// Manifest is manifest.json of a MAR entry.
type Manifest struct {
	SchemaVersion  int            `json:"schema_version"`
	CollectionTime CollectionTime `json:"collection_time"`
	Device         ManifestDevice `json:"device"`
	Producer       Producer       `json:"producer"`
	Type           string         `json:"type"`
	// Metadata depends on Type: CoredumpPayload for "elf-coredump", AttributesPayload for
	// "device-attributes". Decoded manifests hold a json.RawMessage; see DecodeMetadata.
	Metadata any `json:"metadata"`
}

// DecodeMetadata decodes the metadata of a manifest read from JSON into v.
func (m *Manifest) DecodeMetadata(v any) error {
	b, err := json.Marshal(m.Metadata)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// CollectionTime says when, in wall and boot time, an entry was collected.
type CollectionTime struct {
	Timestamp         string `json:"timestamp"` // RFC 3339
	UptimeMs          uint64 `json:"uptime_ms"`
	LinuxBootID       string `json:"linux_boot_id"`
	ElapsedRealtimeMs uint64 `json:"elapsed_realtime_ms"`
	BootCount         uint64 `json:"boot_count"`
}

// ManifestDevice identifies the device and its software.
type ManifestDevice struct {
	ProjectKey      string `json:"project_key"`
	HardwareVersion string `json:"hardware_version"`
	SoftwareVersion string `json:"software_version"`
	SoftwareType    string `json:"software_type"`
	DeviceSerial    string `json:"device_serial"`
}

// Producer names the program that made the entry.
type Producer struct {
	ID        string `json:"id"`
	Version   string `json:"version"`
	OSVersion string `json:"os_version,omitempty"`
	OSName    string `json:"os_name,omitempty"`
}

// CoredumpPayload is the metadata of an "elf-coredump" entry.
type CoredumpPayload struct {
	CoredumpFileName string `json:"coredump_file_name"`
	Compression      string `json:"compression,omitempty"` // "gzip", "zstd"; omitted when none
}

// Manifest types.
const (
	ManifestTypeCoredump   = "elf-coredump"
	ManifestTypeAttributes = "device-attributes"
)

// AttributesPayload is the metadata of a "device-attributes" entry.
type AttributesPayload struct {
	Attributes []Attribute `json:"attributes"`
}

// Attribute is one device attribute; Value is a string, number or bool.
type Attribute struct {
	Key   string `json:"string_key"`
	Value any    `json:"value"`
}
