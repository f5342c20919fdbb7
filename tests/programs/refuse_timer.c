/* A task with a POSIX timer (unsupported by crit dump): it must be
 * refused and keep running. It writes a heartbeat counter to argv[1]. */
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

int main(int argc, char **argv)
{
	timer_t t;
	struct sigevent ev = { .sigev_notify = SIGEV_NONE };
	if (timer_create(CLOCK_MONOTONIC, &ev, &t))
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
