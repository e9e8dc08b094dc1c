package handler

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"meta-memfault-go/internal/device/config"
)

// FetchAppLogs asks memfaultd's local API for its recent log lines. The daemon may be down or
// slow: whatever happens within the timeout is all the handler waits, and any failure simply
// means a core without logs.
func FetchAppLogs(ctx context.Context, cfg *config.Config, max int, timeout time.Duration) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.LocalAPIURL("/api/v1/crash-logs"), nil)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("crash-logs: %s", resp.Status)
	}
	var body struct {
		Logs []string `json:"logs"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&body); err != nil {
		return nil, fmt.Errorf("crash-logs: %w", err)
	}
	if max > 0 && len(body.Logs) > max {
		body.Logs = body.Logs[len(body.Logs)-max:]
	}
	if body.Logs == nil {
		body.Logs = []string{}
	}
	return body.Logs, nil
}
