// C++ fixture: templates, an anonymous namespace, a class method, a lambda and exceptions.
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace outer {
namespace {

int counter;

template <typename T>
struct Box {
	T value;
	__attribute__((noinline)) T twice() const { return value + value; }
	T get() const { return value; }
};

__attribute__((noinline)) int hidden(int x)
{
	if (x > 1000)
		throw std::runtime_error("too big: " + std::to_string(x));
	return x + counter;
}

} // namespace

template <typename T>
__attribute__((noinline)) T accumulate(const std::vector<T> &v)
{
	T sum{};
	for (const T &e : v) {
		Box<T> b{e};
		sum += b.twice() + b.get();
	}
	return sum;
}

class Widget {
public:
	explicit Widget(int n) : n_(n) {}
	__attribute__((noinline)) int run(int k);

private:
	int n_;
};

int Widget::run(int k)
{
	auto f = [this](int v) { return hidden(v * n_); };
	int total = 0;
	for (int i = 0; i < k; i++) {
		try {
			total += f(i);
		} catch (const std::exception &e) {
			std::printf("caught %s\n", e.what());
			total -= 1;
		}
	}
	return total;
}

} // namespace outer

int main(int argc, char **argv)
{
	std::vector<int> vi{1, 2, 3, argc};
	std::vector<double> vd{1.5, 2.5};
	outer::Widget w(argc * 300);
	int r = outer::accumulate(vi) + (int)outer::accumulate(vd) + w.run(argc + 4);
	std::printf("%d\n", r);
	return r == 42;
}
