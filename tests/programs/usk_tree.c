/* A parent and a child joined by a stream socketpair, data queued both
 * ways (the parent keeps fd 3, the child fd 4), like CRIU's usk_tree
 * fixture. Prints "READY <parent> <child>". */
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void)
{
	int sp[2], go[2];
	for (int fd = 3; fd < 40; fd++)
		close(fd);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) || sp[0] != 3 || pipe(go))
		return 1;
	pid_t c = fork();
	if (c == 0) {
		close(sp[0]);
		close(go[0]);
		if (write(sp[1], "child-to-parent", 15) != 15)
			return 2;
		close(go[1]);
		for (;;)
			pause();
	}
	close(sp[1]);
	close(go[1]);
	char x;
	if (read(go[0], &x, 1) != 0)
		return 3;
	close(go[0]);
	if (write(sp[0], "parent-to-child", 15) != 15)
		return 4;
	printf("READY %d %d\n", getpid(), c);
	fflush(stdout);
	for (;;)
		pause();
}
