/* A task with a zombie child (exited with status 3, not reaped) and a
 * live child. Prints "READY <pid> <zombie> <live>". */
#include <sys/syscall.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
	/* Nothing inherited from the test harness: fd numbers are checked. */
	syscall(SYS_close_range, 3, ~0U, 0);
	pid_t z = fork();
	if (z == 0)
		exit(3);
	pid_t l = fork();
	if (l == 0) {
		for (;;)
			pause();
	}
	siginfo_t si;
	if (waitid(P_PID, z, &si, WEXITED | WNOWAIT))
		return 1;
	printf("READY %d %d %d\n", getpid(), z, l);
	fflush(stdout);
	for (;;)
		pause();
}
