package protocol

import (
	"strings"
	"unicode"
)

// PrintableLine turns an untrusted server answer into one printable line for an error
// message: invalid UTF-8 dropped, control and unprintable characters made spaces, runs of
// space folded; cut adds an ellipsis (the caller kept only the start of the body).
func PrintableLine(b []byte, cut bool) string {
	s := strings.Map(func(r rune) rune {
		if r == unicode.ReplacementChar || !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(string(b), ""))
	s = strings.Join(strings.Fields(s), " ")
	if cut {
		s += " …"
	}
	return s
}
