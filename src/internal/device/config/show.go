package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// ShowSettings writes what `memfaultctl show-settings` prints: the configuration sources in
// order (built-in defaults first), the merged configuration as indented JSON (keys sorted,
// unknown keys included), then the device identity as KEY=VALUE lines.
func (c *Config) ShowSettings(w io.Writer, id DeviceInfo) error {
	var b bytes.Buffer
	b.WriteString("Configuration sources (later ones override earlier ones):\n")
	fmt.Fprintf(&b, "  %s\n", builtinName)
	for _, s := range c.Sources {
		fmt.Fprintf(&b, "  %s\n", s)
	}

	merged := c.Merged
	if merged == nil {
		merged = map[string]any{}
	}
	js, err := marshalIndent(merged)
	if err != nil {
		return fmt.Errorf("show settings: %w", err)
	}
	b.WriteString("\nMerged configuration:\n")
	b.Write(js)
	b.WriteString("\nDevice identity:\n")
	fmt.Fprintf(&b, "  MEMFAULT_DEVICE_ID=%s\n", id.DeviceID)
	fmt.Fprintf(&b, "  MEMFAULT_HARDWARE_VERSION=%s\n", id.HardwareVersion)
	fmt.Fprintf(&b, "  MEMFAULT_SOFTWARE_VERSION=%s\n", id.SoftwareVersion)
	fmt.Fprintf(&b, "  MEMFAULT_SOFTWARE_TYPE=%s\n", id.SoftwareType)
	_, err = w.Write(b.Bytes())
	return err
}

// marshalIndent is json.MarshalIndent without HTML escaping ("&" stays "&"), with a final newline.
func marshalIndent(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
