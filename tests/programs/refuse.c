/* A task holding a pidfd (a file kind crit dump does not support): it
 * must be refused and keep running. Writes a heartbeat counter to
 * argv[1] every 2 ms. Prints "READY <pid>". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	/* Nothing inherited from the test harness: fd numbers are checked. */
	syscall(SYS_close_range, 3, ~0U, 0);
	if (syscall(SYS_pidfd_open, getpid(), 0) < 0)
		return 1;
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
