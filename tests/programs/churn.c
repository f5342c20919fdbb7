/* Creates and joins short-lived threads without pause, from 4 churning
 * threads, for the test that a freeze catches threads created during it.
 * Prints "ready\n" once churning. */
#include <sys/syscall.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static volatile unsigned long work;

static void *short_lived(void *arg)
{
	(void)arg;
	work++;
	return NULL;
}

static void *churner(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_t t;
		if (pthread_create(&t, NULL, short_lived, NULL) == 0)
			pthread_join(t, NULL);
	}
	return NULL;
}

int main(void)
{
	/* Nothing inherited from the test harness: fd numbers are checked. */
	syscall(SYS_close_range, 3, ~0U, 0);
	for (int i = 0; i < 4; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, churner, NULL))
			return 1;
	}
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}
