/* A tree: the root, a child in its own process group, a grandchild in
 * its own session. The root and the child share a pipe (inherited). The
 * root has a SIGUSR1 handler. Prints "READY <root> <child> <grandchild>". */
#define _GNU_SOURCE
#include <sys/syscall.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void on_usr1(int s) { (void)s; }

int main(void)
{
	/* Nothing inherited from the test harness: fd numbers are checked. */
	syscall(SYS_close_range, 3, ~0U, 0);
	int p[2], r[2];
	struct sigaction sa = { .sa_handler = on_usr1 };
	sigaction(SIGUSR1, &sa, NULL);
	if (pipe(p) || pipe(r))
		return 1;
	pid_t child = fork();
	if (child == 0) {
		setpgid(0, 0);
		pid_t gc = fork();
		if (gc == 0) {
			/* Reported once its session exists. */
			setsid();
			gc = getpid();
			if (write(r[1], &gc, sizeof(gc)) != sizeof(gc))
				return 1;
			for (;;)
				pause();
		}
		for (;;)
			pause();
	}
	pid_t gc;
	if (read(r[0], &gc, sizeof(gc)) != sizeof(gc))
		return 1;
	printf("READY %d %d %d\n", getpid(), child, gc);
	fflush(stdout);
	for (;;)
		pause();
}
