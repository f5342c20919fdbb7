/* A TCP server whose listener was bound without SO_REUSEADDR, on
 * 127.0.0.1 (argv[1] = "4") or ::1 ("6"), port chosen by the kernel.
 * Each connection it accepts gets one line, "hello reuse=R" with R the
 * listener's SO_REUSEADDR as the server reads it then, and is closed by
 * the server first, which leaves a TIME_WAIT on the listener's port.
 * Prints "READY <pid> <port>". */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "loopback.h"

int main(int argc, char **argv)
{
	syscall(SYS_close_range, 3, ~0U, 0);
	setsid();
	int v6 = argc > 1 && !strcmp(argv[1], "6");
	struct sockaddr_storage ss;
	socklen_t sl = loopback(v6, 0, &ss);
	int l = socket(ss.ss_family, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (void *)&ss, sl) || listen(l, 4) || getsockname(l, (void *)&ss, &sl))
		return 2;
	printf("READY %d %d\n", getpid(), port_of(&ss));
	fflush(stdout);
	for (;;) {
		int c = accept(l, NULL, NULL);
		if (c < 0)
			continue;
		int reuse = -1;
		socklen_t rl = sizeof(reuse);
		getsockopt(l, SOL_SOCKET, SO_REUSEADDR, &reuse, &rl);
		char line[64];
		int n = snprintf(line, sizeof(line), "hello reuse=%d\n", reuse);
		if (write(c, line, n) != n)
			return 3;
		close(c);
	}
}
