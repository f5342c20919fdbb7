/* Forks short-lived children without pause (each exits at once and is
 * reaped), for the test that a freeze copes with descendants that exit
 * or appear while it runs. Prints "ready\n" once forking. */
#include <sys/syscall.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
	/* Nothing inherited from the test harness: fd numbers are checked. */
	syscall(SYS_close_range, 3, ~0U, 0);
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		pid_t c = fork();
		if (c == 0)
			_exit(0);
		if (c > 0)
			waitpid(c, NULL, 0);
	}
}
