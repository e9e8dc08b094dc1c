package gdbbt

import "testing"

func TestFrameName(t *testing.T) {
	for line, want := range map[string]string{
		"#0  crash_segv () at ./threads.c:77":                                                                     "crash_segv",
		"#1  0x000055dabdbed2c2 in crash_now (how=how@entry=0x7ffcc88499f1 \"segv\") at x.c:90":                   "crash_now",
		"#3  0x0000 in (anonymous namespace)::run (n=3) at main.cc:40":                                            "(anonymous namespace)::run",
		"#2  0x0000 in Walker<int>::fold<main::{lambda(int)#1}>(int, main::{lambda(int)#1}) (this=0x1) at a.cc:3": "Walker<int>::fold<main::{lambda(int)#1}>(int, main::{lambda(int)#1})",
		"#0  0xf7a43614 in ?? () from /usr/arm-linux-gnueabihf/lib/libc.so.6":                                     "??",
		"#1  0xf7aca1b0 in read () from /usr/arm-linux-gnueabihf/lib/libc.so.6":                                   "read",
		"#4  0x0000 in main.(*node).payload (n=0x0) at /x/main.go:12":                                             "main.(*node).payload",
		"#5  <signal handler called>":                                                                             "<signal handler called>",
	} {
		if got := FrameName(line); got != want {
			t.Errorf("%q: got %q, want %q", line, got, want)
		}
	}
}
