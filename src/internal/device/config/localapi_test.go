package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLocalAPIURL(t *testing.T) {
	for bind, want := range map[string]string{
		"127.0.0.1:8787": "http://127.0.0.1:8787/v1/sync",
		"0.0.0.0:8787":   "http://127.0.0.1:8787/v1/sync",
		":8787":          "http://127.0.0.1:8787/v1/sync",
		"[::]:9000":      "http://127.0.0.1:9000/v1/sync",
		"[::1]:9000":     "http://[::1]:9000/v1/sync",
	} {
		c := &Config{HTTPServer: HTTPServer{BindAddress: bind}}
		require.Equal(t, want, c.LocalAPIURL("/v1/sync"), bind)
	}
}
