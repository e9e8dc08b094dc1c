//go:build !linux

package upload

// Off Linux every output is plain lines.
func isTerminal(uintptr) bool { return false }

func termWidth(uintptr) int { return 80 }
