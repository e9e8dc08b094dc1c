// Go fixture: a //go:noinline function calling an inlined helper.
package main

import (
	"fmt"
	"os"
)

type point struct{ x, y int }

func (p point) scaled(k int) point { return point{p.x * k, p.y * k} }

func helper(v []int, i int) int {
	s := 0
	for _, e := range v[:i] {
		s += e * 3
	}
	return s + point{s, i}.scaled(2).x
}

//go:noinline
func crash(v []int, n int) int {
	total := helper(v, n)
	if total > 1<<20 {
		var p *point
		return p.x
	}
	return total + helper(v, n/2)
}

func main() {
	v := []int{1, 2, 3, 4, 5, 6}
	fmt.Println(crash(v, len(os.Args)+2))
}
