/* Signals queued and blocked: SIGUSR1 for the thread (tgkill), SIGUSR2
 * and two SIGRTMIN (values 41, 42) for the process. Prints "READY <pid>". */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(void)
{
	/* Nothing inherited from the test harness: fd numbers are checked. */
	syscall(SYS_close_range, 3, ~0U, 0);
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	sigaddset(&s, SIGUSR2);
	sigaddset(&s, SIGRTMIN);
	sigprocmask(SIG_BLOCK, &s, NULL);
	syscall(SYS_tgkill, getpid(), gettid(), SIGUSR1);
	kill(getpid(), SIGUSR2);
	union sigval v = { .sival_int = 41 };
	sigqueue(getpid(), SIGRTMIN, v);
	v.sival_int = 42;
	sigqueue(getpid(), SIGRTMIN, v);
	printf("READY %d\n", getpid());
	fflush(stdout);
	for (;;)
		pause();
}
