// cpp-exception: built with -O2. Parser<int>::parse_field(), a member function of a
// class template, throws std::runtime_error that nothing catches: __cxa_throw
// finds no handler and calls std::terminate, whose verbose handler calls abort()
// (SIGABRT). The throwing frames are still on the stack when abort runs.
// Prints "pid=N".
#include <cstdio>
#include <stdexcept>
#include <string>
#include <unistd.h>
#include <vector>

template <typename T> class Parser {
public:
	explicit Parser(std::vector<std::string> fields) : fields_(std::move(fields)) {}

	__attribute__((noinline)) T parse_field(std::size_t i) const
	{
		const std::string &f = fields_.at(i);
		T v{};
		for (char c : f) {
			if (c < '0' || c > '9')
				throw std::runtime_error("field " + std::to_string(i) + ": not a number: " + f);
			v = v * 10 + (c - '0');
		}
		return v;
	}

	__attribute__((noinline)) T sum() const
	{
		T total{};
		for (std::size_t i = 0; i < fields_.size(); i++)
			total += parse_field(i);
		return total;
	}

private:
	std::vector<std::string> fields_;
};

int main()
{
	std::printf("pid=%d\n", (int)getpid());
	std::fflush(stdout);
	Parser<int> p({"12", "34", "5x6", "78"});
	return p.sum() == 0;
}
