/* Memory to search: MIB MiB (argv[1]) of bytes that vary from page to
 * page, with the string "CRIT-NEEDLE" placed every 64 MiB at 4090 bytes
 * into the page, so that it spans two pages. Prints
 * "READY <pid> <hex address of the block>", then waits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#define STRIDE (64UL << 20)

int main(int argc, char **argv)
{
	syscall(SYS_close_range, 3, ~0U, 0);
	size_t len = (size_t)atol(argc > 1 ? argv[1] : "64") << 20;
	unsigned char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return 1;
	for (size_t i = 0; i < len; i += 8) {
		/* Lowercase letters only: no upper case needle can appear by chance. */
		unsigned long v = (i >> 12) * 0x9e3779b97f4a7c15UL + (i & 4095);
		for (int k = 0; k < 8; k++)
			m[i + k] = 'a' + (unsigned char)((v >> (k * 8)) % 26);
	}
	for (size_t at = 4090; at + 11 <= len; at += STRIDE)
		memcpy(m + at, "CRIT-NEEDLE", 11);
	printf("READY %d %lx\n", getpid(), (unsigned long)m);
	fflush(stdout);
	for (;;)
		pause();
}
