/* A TCP connection still being made at the dump: connects without
 * blocking to 127.0.0.1:argv[1] (or [::1] with argv[2] "6"), whose
 * listener (the test's) has a full accept queue and drops the SYN, so the
 * socket stays in SYN_SENT. Prints "READY <pid>". On SIGUSR1, after the
 * restore: waits for the connection to complete (the test has made room
 * by then), checks SO_ERROR, sends "hi", expects "ok" and EOF, and writes
 * "OK" or "FAIL: why" to argv[3]. */
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "tcpprog.h"

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
	tcpprog_start();
	if (argc < 4)
		return 1;
	int c = dial(argv[2][0] == '6', atoi(argv[1]), SOCK_NONBLOCK, 0);
	if (c < 0 || errno != EINPROGRESS)
		return 2;
	printf("READY %d\n", getpid());
	fflush(stdout);
	wait_go();
	answer(argv[3], check(c));
}
