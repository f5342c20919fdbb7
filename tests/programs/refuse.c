/* A task holding what crit dump refuses: a pidfd of its parent, outside
 * the tree (no restore could open it again), or with argv[2] "mdwe", memory-deny-write-execute
 * (prctl PR_SET_MDWE, which CRIU's images cannot record). Its dump must
 * be refused and it must keep running. Writes a heartbeat counter to
 * argv[1] every 2 ms. Prints "READY <pid>", or "NOMDWE" where the kernel
 * lacks MDWE (before Linux 6.3). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PR_SET_MDWE_ 65
#define PR_MDWE_REFUSE_EXEC_GAIN_ 1

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	/* Nothing inherited from the test harness: fd numbers are checked. */
	syscall(SYS_close_range, 3, ~0U, 0);
	if (argc > 2 && !strcmp(argv[2], "mdwe")) {
		if (prctl(PR_SET_MDWE_, PR_MDWE_REFUSE_EXEC_GAIN_, 0, 0, 0)) {
			printf("NOMDWE\n");
			return 1;
		}
	} else if (syscall(SYS_pidfd_open, getppid(), 0) < 0) {
		return 1;
	}
	int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	printf("READY %d\n", getpid());
	fflush(stdout);
	for (unsigned long n = 0;; n++) {
		char b[32];
		int l = snprintf(b, sizeof(b), "%lu\n", n);
		pwrite(fd, b, l, 0);
		usleep(2000);
	}
}
