package worker

import (
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBackground: wait returns after every function ran, and a panic in one is raised again in
// the caller of wait (where a job's recover turns it into an error), once.
func TestBackground(t *testing.T) {
	b := &background{}
	var ran atomic.Int32
	for i := 0; i < 5; i++ {
		b.run(func() { ran.Add(1) })
	}
	b.wait()
	require.EqualValues(t, 5, ran.Load())

	b.run(func() { panic("hostile symbol file") })
	b.run(func() { ran.Add(1) })
	require.PanicsWithValue(t, "hostile symbol file", b.wait)
	require.EqualValues(t, 6, ran.Load())
	require.NotPanics(t, b.wait, "a panic is raised once")
}
