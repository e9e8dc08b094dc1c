// go-crash: built with go build -trimpath, CGO_ENABLED=0 (static), run with
// GOTRACEBACK=crash (also set by debug.SetTraceback) so that after the nil
// dereference the runtime prints every goroutine and aborts with a core.
// The main goroutine faults in (*node).payload, called from the
// //go:noinline chain walk -> sumPayloads; a second goroutine is blocked
// receiving from a channel. Prints "pid=N".
package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"time"
)

type node struct {
	next  *node
	value int
}

//go:noinline
func (n *node) payload() int {
	return n.next.value // n.next is nil on the last node: SIGSEGV
}

//go:noinline
func sumPayloads(head *node, depth int) int {
	if depth == 0 {
		sum := 0
		for n := head; n != nil; n = n.next {
			sum += n.payload()
		}
		return sum
	}
	return sumPayloads(head, depth-1) + depth
}

//go:noinline
func waiter(ready chan<- struct{}, block <-chan int) {
	close(ready)
	<-block
}

func main() {
	debug.SetTraceback("crash")
	fmt.Printf("pid=%d\n", os.Getpid())
	ready := make(chan struct{})
	block := make(chan int)
	go waiter(ready, block)
	<-ready
	time.Sleep(200 * time.Millisecond)
	list := &node{value: 1, next: &node{value: 2, next: &node{value: 3}}}
	os.Exit(sumPayloads(list, 2))
}
