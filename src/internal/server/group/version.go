package group

import (
	"strconv"
	"strings"
)

// Seen is a software version and when the server first saw it: the id of the first core of
// that software type and version (ids grow in arrival order).
type Seen struct {
	Version   string
	FirstCore int64
}

// CompareVersions orders two software versions when both look like versions: an optional
// leading "v", then dot-separated numbers ("1.10.2"), an optional "-pre.release" part and an
// optional "+build" part (ignored). Numbers compare numerically (1.10 > 1.9), missing numbers
// count as 0 (1.2 == 1.2.0), a pre-release is older than its release (1.2.0-rc1 < 1.2.0) and
// pre-release parts compare as numbers when both are numbers, else as text. ok is false when
// either string is not of that shape ("main-abc123", "2024.05-yocto" compares fine, "rock" not).
func CompareVersions(a, b string) (cmp int, ok bool) {
	pa, ok1 := parseVersion(a)
	pb, ok2 := parseVersion(b)
	if !ok1 || !ok2 {
		return 0, false
	}
	for i := 0; i < max(len(pa.nums), len(pb.nums)); i++ {
		x, y := at(pa.nums, i), at(pb.nums, i)
		if x != y {
			return sign(x, y), true
		}
	}
	switch {
	case pa.pre == "" && pb.pre == "":
		return 0, true
	case pa.pre == "":
		return 1, true
	case pb.pre == "":
		return -1, true
	}
	xs, ys := strings.Split(pa.pre, "."), strings.Split(pb.pre, ".")
	for i := 0; i < min(len(xs), len(ys)); i++ {
		xn, errx := strconv.ParseUint(xs[i], 10, 64)
		yn, erry := strconv.ParseUint(ys[i], 10, 64)
		switch {
		case errx == nil && erry == nil:
			if xn != yn {
				return sign(xn, yn), true
			}
		case xs[i] != ys[i]:
			if xs[i] < ys[i] {
				return -1, true
			}
			return 1, true
		}
	}
	return sign(uint64(len(xs)), uint64(len(ys))), true
}

type version struct {
	nums []uint64
	pre  string
}

func parseVersion(s string) (version, bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(strings.TrimPrefix(s, "v"), "V")
	s, _, _ = strings.Cut(s, "+")
	main, pre, _ := strings.Cut(s, "-")
	if main == "" {
		return version{}, false
	}
	var v version
	for _, p := range strings.Split(main, ".") {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return version{}, false
		}
		v.nums = append(v.nums, n)
	}
	v.pre = pre
	return v, true
}

func at(n []uint64, i int) uint64 {
	if i < len(n) {
		return n[i]
	}
	return 0
}

func sign(x, y uint64) int {
	if x < y {
		return -1
	}
	if x > y {
		return 1
	}
	return 0
}

// Newer reports whether version now is newer than every version in earlier: by
// CompareVersions where both are versions, else by which the server saw first (a version first
// seen later is the newer one). A version equal to one in earlier is not newer. With no earlier
// versions nothing is a regression: it is false.
func Newer(now Seen, earlier []Seen) bool {
	if len(earlier) == 0 {
		return false
	}
	for _, e := range earlier {
		if e.Version == now.Version {
			return false
		}
		if c, ok := CompareVersions(now.Version, e.Version); ok {
			if c <= 0 {
				return false
			}
			continue
		}
		if now.FirstCore <= e.FirstCore {
			return false
		}
	}
	return true
}
