// cxx: a C++ program with a namespace, a class template and an exception; "cxx crash" faults
// inside a template member function.
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace shapes {

template <typename T> class Stack {
public:
	void push(T v) { items_.push_back(v); }
	T pop()
	{
		if (items_.empty())
			throw std::runtime_error("empty stack");
		T v = items_.back();
		items_.pop_back();
		return v;
	}
	__attribute__((noinline)) T poke(T *where)
	{
		*where = pop(); // faults when where is null
		return *where;
	}

private:
	std::vector<T> items_;
};

} // namespace shapes

int main(int argc, char **argv)
{
	shapes::Stack<int> s;
	s.push(7);
	if (argc > 1 && std::strcmp(argv[1], "crash") == 0) {
		int *volatile nowhere = nullptr;
		return s.poke(nowhere);
	}
	try {
		s.pop();
		s.pop();
	} catch (const std::exception &e) {
		std::printf("caught: %s\n", e.what());
	}
	return 0;
}
