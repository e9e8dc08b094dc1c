package group

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"crash_segv": "crash_segv",
		"ns::Widget<int>::poke(int, char const*) const":                          "ns::Widget<int>::poke",
		"(anonymous namespace)::helper(std::vector<int, std::allocator<int> >&)": "(anonymous namespace)::helper",
		"foo.constprop.0":                    "foo",
		"bar.cold":                           "bar",
		"main.crash":                         "main.crash",
		"rust_app::inner::h0123456789abcdef": "rust_app::inner",
		"std::operator<<(std::ostream&, char const*)": "std::operator<<",
		"operator()":                                  "operator()",
		"Outer::operator()(int) const":                "Outer::operator()",
		"f()::{lambda(int)#1}::operator()(int) const": "f()::{lambda(int)#1}::operator()",
		// gdb's frame names keep the parameters of names its C++ parser
		// rejects (lambdas, ABI tags, function types in template arguments).
		"(anonymous namespace)::Walker<(anonymous namespace)::Node<long> >::fold<(anonymous namespace)::run(Node<long int>*, long int)::<lambda(long int, const (anonymous namespace)::Node<long int>*)> >(struct {...})": "(anonymous namespace)::Walker<(anonymous namespace)::Node<long> >::fold<(anonymous namespace)::run(Node<long int>*, long int)::<lambda(long int, const (anonymous namespace)::Node<long int>*)> >",
		"std::__invoke_impl<long int, main(int, char**)::<lambda(long int)>&, long int>(std::__invoke_other, struct {...} &)":                                                                                             "std::__invoke_impl<long int, main(int, char**)::<lambda(long int)>&, long int>",
		"std::thread::_State_impl<std::thread::_Invoker<std::tuple<main()::<lambda()> > > >::_M_run(void)":                                                                                                                "std::thread::_State_impl<std::thread::_Invoker<std::tuple<main()::<lambda()> > > >::_M_run",
		"std::function<long (long)>::operator()(long) const": "std::function<long (long)>::operator()",
		"app::label[abi:cxx11](int)":                         "app::label[abi:cxx11]",
		"operator()(void)":                                   "operator()",
	} {
		require.Equal(t, want, Normalize(in), in)
	}
}

func frames(names ...string) []Frame {
	var out []Frame
	for _, n := range names {
		mod := "/usr/bin/app"
		if n == "raise" || n == "abort" || n == "__pthread_kill_implementation" {
			mod = "/lib/x86_64-linux-gnu/libc.so.6"
		}
		out = append(out, Frame{Function: n, Module: mod})
	}
	return out
}

func TestFingerprint(t *testing.T) {
	g, err := New(DefaultRules())
	require.NoError(t, err)

	a := g.Fingerprint("SIGABRT", frames("__pthread_kill_implementation", "raise", "abort", "check(int)", "run()", "main", "x", "y"))
	require.Equal(t, []int{3, 4, 5, 6}, a.Frames, "abort/raise and libc are not in-app")
	require.Equal(t, []string{"check", "run", "main", "x"}, a.Keys)

	// The same code from another build: other addresses, same names, same issue.
	b := g.Fingerprint("SIGABRT", frames("__pthread_kill_implementation", "raise", "abort", "check(long)", "run()", "main", "x", "y"))
	require.Equal(t, a.Hash, b.Hash)

	// Another crash site: another issue.
	c := g.Fingerprint("SIGABRT", frames("raise", "abort", "other()", "run()", "main"))
	require.NotEqual(t, a.Hash, c.Hash)
	d := g.Fingerprint("SIGSEGV", frames("check(int)", "run()", "main", "x"))
	require.NotEqual(t, a.Hash, d.Hash, "the signal is part of the fingerprint")

	// No symbols: build-id and offset, never the runtime address.
	e := g.Fingerprint("SIGSEGV", []Frame{{Module: "/usr/bin/app", BuildID: "abcd", Offset: 0x1234}})
	require.Equal(t, []string{"abcd+0x1234"}, e.Keys)

	// A Rust panic with panic=abort: the panic runtime and the inlined Result::expect are not
	// where the program went wrong.
	r := g.Fingerprint("SIGABRT", frames("__pthread_kill_implementation", "raise", "abort", "std::sys::pal::unix::abort_internal",
		"std::process::abort", "std::rt::__rust_abort", "panic_abort::__rust_start_panic", "std::panicking::rust_panic",
		"core::panicking::panic_fmt", "core::result::unwrap_failed",
		"core::result::Result<f64, core::num::dec2flt::ParseFloatError>::expect<f64, core::num::dec2flt::ParseFloatError>",
		"thermostat::parse_setpoint", "thermostat::apply_schedule", "thermostat::main", "core::ops::function::FnOnce::call_once<fn(), ()>",
		"std::rt::lang_start_internal", "main"))
	require.Equal(t, []string{"thermostat::parse_setpoint", "thermostat::apply_schedule", "thermostat::main", "main"}, r.Keys)

	// Nothing in-app: the top frames.
	f := g.Fingerprint("SIGABRT", frames("raise", "abort"))
	require.Equal(t, []int{0, 1}, f.Frames)
}
