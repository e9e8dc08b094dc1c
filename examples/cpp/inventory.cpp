// Example crash in C++: an exception nobody catches. Inventory::reserve throws when stock runs
// out; with no handler, std::terminate aborts the program (SIGABRT) with the throwing frames
// still on the stack. Built by scripts/demo.sh with -g -O0.
#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>

namespace shop {

class Inventory {
public:
	explicit Inventory(std::map<std::string, int> stock) : stock_(std::move(stock)) {}

	__attribute__((noinline)) void reserve(const std::string &item, int count)
	{
		auto it = stock_.find(item);
		if (it == stock_.end() || it->second < count)
			throw std::out_of_range("not enough " + item);
		it->second -= count;
	}

private:
	std::map<std::string, int> stock_;
};

__attribute__((noinline)) void place_order(Inventory &inv, const std::string &item, int count)
{
	inv.reserve(item, count);
	std::printf("ordered %d %s\n", count, item.c_str());
}

} // namespace shop

int main()
{
	shop::Inventory inv({{"bolt", 10}, {"nut", 3}});
	shop::place_order(inv, "bolt", 4);
	shop::place_order(inv, "nut", 5); // only 3 nuts: throws, nobody catches
	return 0;
}
