/* A TCP connection still being made at the dump: connects without
 * blocking to 127.0.0.1:argv[1] (or [::1] with argv[2] "6"), whose
 * listener (the test's) has a full accept queue and drops the SYN, so the
 * socket stays in SYN_SENT. Prints "READY <pid>". On SIGUSR1, after the
 * restore: waits for the connection to complete (the test has made room
 * by then), checks SO_ERROR, sends "hi", expects "ok" and EOF, and writes
 * "OK" or "FAIL: why" to argv[3]. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "loopback.h"

static volatile sig_atomic_t go;
static void on_usr1(int s) { (void)s; go = 1; }

static const char *check(int c)
{
	struct pollfd p = { c, POLLOUT, 0 };
	if (poll(&p, 1, 30000) != 1)
		return "the connection did not complete";
	int err = -1;
	socklen_t l = sizeof err;
	if (getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &l) || err)
		return err == ECONNREFUSED ? "refused" : "SO_ERROR set";
	fcntl(c, F_SETFL, 0);
	if (write(c, "hi", 2) != 2)
		return "write failed";
	char b[8];
	size_t n = 0;
	for (;;) {
		struct pollfd q = { c, POLLIN, 0 };
		if (poll(&q, 1, 10000) != 1)
			return "timed out reading";
		ssize_t r = read(c, b + n, sizeof b - n);
		if (r < 0)
			return "read failed";
		if (r == 0)
			break;
		n += r;
		if (n == sizeof b)
			return "too many bytes";
	}
	return n == 2 && !memcmp(b, "ok", 2) ? NULL : "not ok";
}

int main(int argc, char **argv)
{
	syscall(SYS_close_range, 3, ~0U, 0);
	setsid(); /* a session of its own: restored without --shell-job */
	if (argc < 4)
		return 1;
	signal(SIGUSR1, on_usr1);
	int v6 = argv[2][0] == '6';
	int c = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_storage a;
	socklen_t al = loopback(v6, atoi(argv[1]), &a);
	if (connect(c, (void *)&a, al) == 0 || errno != EINPROGRESS)
		return 2;
	printf("READY %d\n", getpid());
	fflush(stdout);
	while (!go)
		pause();
	const char *why = check(c);
	FILE *f = fopen(argv[3], "w");
	if (f) {
		fprintf(f, why ? "FAIL: %s" : "OK", why);
		fclose(f);
	}
	for (;;)
		pause();
}
