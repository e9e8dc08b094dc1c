package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// SyntaxError is a configuration file that is not a JSON object (with /* */ comments).
type SyntaxError struct {
	File   string
	Line   int // 1-based
	Column int // 1-based, in bytes
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("parse %s: line %d, column %d: %s", e.File, e.Line, e.Column, e.Msg)
}

// parseLayer parses one layer: a JSON object, with /* */ block comments allowed anywhere
// outside strings. Numbers are kept as json.Number.
func parseLayer(name string, data []byte) (map[string]any, error) {
	clean, err := stripComments(name, data)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(clean))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		var se *json.SyntaxError
		switch {
		case errors.As(err, &se):
			return nil, syntaxError(name, data, int(se.Offset)-1, se.Error())
		case errors.Is(err, io.EOF):
			return nil, syntaxError(name, data, len(data), "no JSON object (the file is empty)")
		case errors.Is(err, io.ErrUnexpectedEOF):
			return nil, syntaxError(name, data, len(data), "unexpected end of file")
		default:
			return nil, fmt.Errorf("parse %s: %w", name, err)
		}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		start := len(clean) - len(bytes.TrimLeft(clean, " \t\r\n"))
		return nil, syntaxError(name, data, start, "want a JSON object at the top level, got "+describe(v))
	}
	off := int(dec.InputOffset())
	if rest := bytes.TrimLeft(clean[off:], " \t\r\n"); len(rest) > 0 {
		return nil, syntaxError(name, data, len(clean)-len(rest), "unexpected data after the top-level object")
	}
	return obj, nil
}

// stripComments blanks out /* */ comments (outside strings) with spaces, keeping newlines, so
// that offsets in the result are offsets in data.
func stripComments(name string, data []byte) ([]byte, error) {
	out := bytes.Clone(data)
	inString := false
	for i := 0; i < len(out); i++ {
		c := out[i]
		if inString {
			switch c {
			case '\\':
				i++ // the escaped byte cannot end the string
			case '"':
				inString = false
			}
			continue
		}
		switch {
		case c == '"':
			inString = true
		case c == '/' && i+1 < len(out) && out[i+1] == '*':
			n := bytes.Index(out[i+2:], []byte("*/"))
			if n < 0 {
				return nil, syntaxError(name, data, i, "unterminated /* comment")
			}
			end := i + 2 + n + 2
			for j := i; j < end; j++ {
				if out[j] != '\n' {
					out[j] = ' '
				}
			}
			i = end - 1
		}
	}
	return out, nil
}

func syntaxError(name string, data []byte, off int, msg string) error {
	off = max(0, min(off, len(data)))
	before := data[:off]
	line := 1 + bytes.Count(before, []byte("\n"))
	col := off - bytes.LastIndexByte(before, '\n')
	return &SyntaxError{File: name, Line: line, Column: col, Msg: msg}
}
