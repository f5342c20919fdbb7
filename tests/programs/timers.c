/* POSIX timers: one armed (SIGEV_SIGNAL SIGUSR1, 100 s, interval 50 s,
 * sival 0x1234), one disarmed (SIGEV_NONE). Writes a heartbeat counter
 * to argv[1] every 2 ms. Prints "READY <pid>". */
#include <sys/syscall.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	/* Nothing inherited from the test harness: fd numbers are checked. */
	syscall(SYS_close_range, 3, ~0U, 0);
	timer_t a, b;
	struct sigevent ev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1 };
	ev.sigev_value.sival_ptr = (void *)0x1234;
	if (timer_create(CLOCK_MONOTONIC, &ev, &a))
		return 1;
	struct itimerspec its = { .it_value = { 100, 0 }, .it_interval = { 50, 0 } };
	timer_settime(a, 0, &its, NULL);
	struct sigevent none = { .sigev_notify = SIGEV_NONE };
	if (timer_create(CLOCK_REALTIME, &none, &b))
		return 1;
	int fd = open(argc > 1 ? argv[1] : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	printf("READY %d\n", getpid());
	fflush(stdout);
	for (unsigned long n = 0;; n++) {
		char buf[32];
		int l = snprintf(buf, sizeof(buf), "%lu\n", n);
		pwrite(fd, buf, l, 0);
		usleep(2000);
	}
}
