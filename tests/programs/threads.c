/* Three threads: each blocks a different signal set; one has a
 * sigaltstack. Prints "READY <pid> <tid1> <tid2>". */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>

static volatile pid_t tids[2];
static volatile int started;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;

static void *worker(void *arg)
{
	long n = (long)arg;
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, n == 0 ? SIGUSR1 : SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &s, NULL);
	if (n == 1) {
		stack_t ss = { .ss_sp = malloc(65536), .ss_size = 65536, .ss_flags = 0 };
		sigaltstack(&ss, NULL);
	}
	tids[n] = syscall(SYS_gettid);
	pthread_mutex_lock(&m);
	started++;
	pthread_mutex_unlock(&m);
	volatile unsigned long c = 0;
	for (;;) {
		c++;
		usleep(1000);
	}
	return NULL;
}

int main(void)
{
	/* Nothing inherited from the test harness: fd numbers are checked. */
	syscall(SYS_close_range, 3, ~0U, 0);
	pthread_t t[2];
	for (long i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, worker, (void *)i);
	for (;;) {
		pthread_mutex_lock(&m);
		int s = started;
		pthread_mutex_unlock(&m);
		if (s == 2)
			break;
		usleep(1000);
	}
	printf("READY %d %d %d\n", getpid(), tids[0], tids[1]);
	fflush(stdout);
	for (;;)
		pause();
}
