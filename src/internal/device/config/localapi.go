package config

import (
	"net"
)

// LocalAPIURL is the URL of path on memfaultd's local HTTP API as a client on the device
// reaches it: a wildcard bind address (":8787", "0.0.0.0:8787") is reached on loopback.
func (c *Config) LocalAPIURL(path string) string {
	host, port, err := net.SplitHostPort(c.HTTPServer.BindAddress)
	if err != nil {
		return "http://" + c.HTTPServer.BindAddress + path
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + path
}
