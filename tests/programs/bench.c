/* The dump benchmark: 9,000 socketpairs with one queued message each and
 * 1 GiB of dirty memory in 16,384 mappings that do not merge (every
 * other one has a different protection). Prints "READY <pid>". */
#include <sys/syscall.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>

int main(void)
{
	/* Nothing inherited from the test harness: fd numbers are checked. */
	syscall(SYS_close_range, 3, ~0U, 0);
	struct rlimit r = { 65536, 65536 };
	setrlimit(RLIMIT_NOFILE, &r);
	for (int i = 0; i < 9000; i++) {
		int sp[2];
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp))
			return 1;
		if (write(sp[0], "benchmark-message", 17) != 17)
			return 2;
	}
	size_t len = 65536;
	for (int i = 0; i < 16384; i++) {
		int prot = PROT_READ | PROT_WRITE | ((i & 1) ? PROT_EXEC : 0);
		char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			return 3;
		for (size_t o = 0; o < len; o += 4096)
			memset(m + o, (i + o) | 1, 64);
		mprotect(m, len, prot);
	}
	printf("READY %d\n", getpid());
	fflush(stdout);
	for (;;)
		pause();
}
