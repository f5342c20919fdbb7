/* bench-warm MIB: touches MIB MiB of fresh memory and frees it, right
 * before a measured command (see bench-warm.h for why). */
#include <stdlib.h>
#include "bench-warm.h"

int main(int argc, char **argv)
{
	if (argc != 2)
		return fprintf(stderr, "usage: bench-warm MIB\n"), 2;
	bench_warm(atol(argv[1]));
	return 0;
}
