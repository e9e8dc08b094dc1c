/* module: a kernel-module-like relocatable object. It is not a loadable module (no kernel
 * headers here) but has what Yocto keys on: a .ko name under /lib/modules, a "vermagic="
 * string in .modinfo, a GNU build-id (ld -r --build-id) and DWARF. */
static const char module_vermagic[] __attribute__((section(".modinfo"), used, aligned(1))) =
	"vermagic=6.6.0-yocto-standard SMP preempt mod_unload";
static const char module_license[] __attribute__((section(".modinfo"), used, aligned(1))) =
	"license=GPL";

struct module_state {
	int loads;
	const char *name;
};

static struct module_state state = {0, "memfault_test"};

static int __attribute__((noinline)) module_count(struct module_state *s)
{
	return ++s->loads;
}

int init_module(void)
{
	return module_count(&state) > 0 ? 0 : -1;
}

void cleanup_module(void)
{
	state.loads = 0;
}
