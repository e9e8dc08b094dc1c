package protocol

// Manifest is manifest.json of a MAR entry.
type Manifest struct {
	SchemaVersion  int             `json:"schema_version"`
	CollectionTime CollectionTime  `json:"collection_time"`
	Device         ManifestDevice  `json:"device"`
	Producer       Producer        `json:"producer"`
	Type           string          `json:"type"`
	Metadata       CoredumpPayload `json:"metadata"`
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

// ManifestTypeCoredump is the type of a core entry.
const ManifestTypeCoredump = "elf-coredump"
