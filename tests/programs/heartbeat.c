#define _GNU_SOURCE
/* Dirty memory (argv[2] MiB) and a heartbeat counter written to argv[1]
 * every 2 ms: to check a dump that is killed leaves the task running.
 * With argv[3] = "pidfd-child", a child holding a pidfd of the root's
 * parent, outside the tree (which crit refuses), is forked first, so a
 * dump fails after the root was read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>

int main(int argc, char **argv)
{
	/* Nothing inherited from the test harness: fd numbers are checked. */
	syscall(SYS_close_range, 3, ~0U, 0);
	size_t mb = argc > 2 ? atoi(argv[2]) : 256;
	pid_t outside = getppid();
	if (argc > 3 && !strcmp(argv[3], "pidfd-child") && fork() == 0) {
		syscall(SYS_pidfd_open, outside, 0);
		for (;;)
			pause();
	}
	char *m = malloc(mb << 20);
	for (size_t i = 0; i < (mb << 20); i += 4096)
		m[i] = (char)(i >> 12) | 1;
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
