// cpp-segv-template: built with -O2. A class template in an anonymous namespace
// walks a singly linked list and applies a lambda to every node; the lambda is
// inlined into Walker<Node<long>>::fold<...>() and reads through the NULL
// `weight` pointer of the last node (SIGSEGV). Prints "pid=N".
#include <cstdio>
#include <unistd.h>

namespace {

template <typename T> struct Node {
	T value;
	const T *weight; // NULL on the last node
	Node *next;
};

template <typename N> class Walker {
public:
	explicit Walker(N *head) : head_(head) {}

	// Applies f to every node.
	template <typename F> __attribute__((noinline)) long fold(F f) const
	{
		long acc = 0;
		for (N *n = head_; n != nullptr; n = n->next)
			acc = f(acc, n);
		return acc;
	}

private:
	N *head_;
};

__attribute__((noinline)) long run(Node<long> *head, long scale)
{
	Walker<Node<long>> w(head);
	auto step = [scale](long acc, const Node<long> *n) {
		// The last node's weight is NULL: the fault.
		return acc + n->value * scale * *n->weight;
	};
	return w.fold(step);
}

} // namespace

Node<long> nodes[3];
Node<long> *volatile list = nodes;
const long weights[2] = {3, 5};
volatile long sink;

int main()
{
	std::printf("pid=%d\n", (int)getpid());
	std::fflush(stdout);
	nodes[0] = {1, &weights[0], &nodes[1]};
	nodes[1] = {2, &weights[1], &nodes[2]};
	nodes[2] = {3, nullptr, nullptr};
	sink = run(list, 7);
	return 0;
}
