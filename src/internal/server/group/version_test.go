package group

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		name, a, b string
		cmp        int
		ok         bool
	}{
		{"equal", "1.0", "1.0", 0, true},
		{"numeric not text", "1.10", "1.9", 1, true},
		{"missing is zero", "1.2", "1.2.0", 0, true},
		{"leading v", "v2.0.0", "1.99", 1, true},
		{"major wins", "2.0", "10.0", -1, true},
		{"pre-release before release", "1.2.0-rc1", "1.2.0", -1, true},
		{"pre-release numbers", "1.2.0-rc.10", "1.2.0-rc.9", 1, true},
		{"pre-release text", "1.2.0-beta", "1.2.0-alpha", 1, true},
		{"build ignored", "1.2.0+abc", "1.2.0+def", 0, true},
		{"yocto-ish date", "2024.05", "2023.11", 1, true},
		{"not a version", "main-abc123", "1.0", 0, false},
		{"empty", "", "1.0", 0, false},
		{"words", "rock", "paper", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := CompareVersions(tc.a, tc.b)
			require.Equal(t, tc.ok, ok)
			require.Equal(t, tc.cmp, c)
			if ok {
				back, _ := CompareVersions(tc.b, tc.a)
				require.Equal(t, -tc.cmp, back, "antisymmetric")
			}
		})
	}
}

func TestNewer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		now     Seen
		earlier []Seen
		want    bool
	}{
		{"newer than all", Seen{"1.1", 9}, []Seen{{"1.0", 1}, {"0.9", 5}}, true},
		{"older", Seen{"0.9", 9}, []Seen{{"1.0", 1}}, false},
		{"between", Seen{"1.0.5", 9}, []Seen{{"1.0", 1}, {"1.1", 2}}, false},
		{"same version", Seen{"1.0", 9}, []Seen{{"1.0", 1}}, false},
		{"first sighting is no regression", Seen{"1.0", 1}, nil, false},
		{"1.10 after 1.9", Seen{"1.10", 3}, []Seen{{"1.9", 1}}, true},
		{"not versions: seen later", Seen{"build-b", 7}, []Seen{{"build-a", 2}}, true},
		{"not versions: seen earlier", Seen{"build-a", 2}, []Seen{{"build-b", 7}}, false},
		{"mixed: version order where it applies", Seen{"2.0", 3}, []Seen{{"1.0", 1}, {"nightly", 2}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, Newer(tc.now, tc.earlier))
		})
	}
}
