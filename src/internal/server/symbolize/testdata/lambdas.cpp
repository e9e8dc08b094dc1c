// C++ fixture for gdb's frame names: it crashes (SIGSEGV) at the end of a
// call chain that goes through a std::thread, std::function, templates
// instantiated with lambdas, an anonymous namespace, a local class, an
// operator, a const method and a function with an ABI tag.
#include <cstdio>
#include <functional>
#include <string>
#include <thread>

namespace app {
namespace {

volatile int sink;

template <typename T> struct Node {
	T value;
	const T *weight;
};

// Parameters of many kinds: gdb prints them in the name of a function it
// names from DWARF.
__attribute__((noinline)) long mix(long a, unsigned long b, const char *s, const Node<long> &n, Node<long> &&m,
				   int (*cb)(int), const int (&arr)[3], short c, unsigned char d, ...)
{
	return a + (long)b + s[0] + n.value + m.value + cb(arr[1]) + c + d + *n.weight;
}

int twice(int v) { return 2 * v; }

template <typename F> __attribute__((noinline)) long apply(F f, long x) { return f(x) + sink; }

struct Scale {
	long k;
	__attribute__((noinline)) long operator()(long v) const
	{
		static const int arr[3] = {1, 2, 3};
		static const long w = 1;
		Node<long> n{v, k > 100 ? nullptr : &w};
		return mix(v, 2, "x", n, Node<long>{3, &w}, twice, arr, 4, 5, 6);
	}
};

} // namespace

template <typename T> class Box {
public:
	explicit Box(T v) : v_(v) {}
	__attribute__((noinline)) T get(long k) const
	{
		return apply([this, k](long x) { return Scale{k}(x) + v_; }, k);
	}

private:
	T v_;
};

__attribute__((noinline)) std::string label(int x) { return std::to_string(x) + "!"; }

} // namespace app

struct Printer {
	int n;
	__attribute__((noinline)) Printer &operator<<(long v)
	{
		n += (int)v;
		return *this;
	}
};

int main(int argc, char **)
{
	std::function<long(long)> fn = [](long v) {
		struct Local {
			__attribute__((noinline)) static long run(long x) { return app::Box<long>(x).get(x * 1000); }
		};
		return Local::run(v) + (long)app::label((int)v).size();
	};
	Printer p{0};
	std::thread t([&] { p << fn(argc); });
	t.join();
	std::printf("%d\n", p.n);
	return 0;
}
