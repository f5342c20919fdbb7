/* A task with a zombie child (exited with status 3, not reaped) and a
 * live child. Prints "READY <pid> <zombie> <live>". */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(void)
{
	pid_t z = fork();
	if (z == 0)
		exit(3);
	pid_t l = fork();
	if (l == 0) {
		for (;;)
			pause();
	}
	usleep(50000);
	printf("READY %d %d %d\n", getpid(), z, l);
	fflush(stdout);
	for (;;)
		pause();
}
