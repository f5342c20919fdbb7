/* One end of a TCP connection whose other end is outside the tree:
 * connects to 127.0.0.1:argv[1] (or [::1] with argv[3] "6"), writes up
 * to OUT bytes of a pattern (what the peer's window takes), and reads
 * nothing until SIGUSR1. Prints "READY <pid> <bytes written>". On
 * SIGUSR1 reads argv[2] bytes of the peer's pattern, checks them in
 * order, answers "ping" with "pong", and writes "OK" or "FAIL: why" to
 * argv[4]. */
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "tcpprog.h"

#define OUT 200000

static const char *run(int c, size_t want)
{
	static unsigned char buf[65536];
	size_t got = 0;
	while (got < want) {
		struct pollfd p = { c, POLLIN, 0 };
		if (poll(&p, 1, 10000) != 1)
			return "timed out reading the peer's bytes";
		size_t n = want - got < sizeof(buf) ? want - got : sizeof(buf);
		ssize_t r = read(c, buf, n);
		if (r <= 0)
			return r == 0 ? "the peer closed" : "read failed (reset?)";
		for (ssize_t k = 0; k < r; k++)
			if (buf[k] != pat(got + k, 2))
				return "a byte from the peer differs";
		got += r;
	}
	char b[4];
	size_t n = 0;
	while (n < 4) {
		struct pollfd p = { c, POLLIN, 0 };
		if (poll(&p, 1, 10000) != 1)
			return "no ping";
		ssize_t r = read(c, b + n, 4 - n);
		if (r <= 0)
			return "reading ping failed";
		n += r;
	}
	if (memcmp(b, "ping", 4))
		return "not ping";
	if (write(c, "pong", 4) != 4)
		return "writing pong failed";
	return NULL;
}

int main(int argc, char **argv)
{
	tcpprog_start();
	if (argc < 5)
		return 1;
	int c = dial(argv[3][0] == '6', atoi(argv[1]), 0, 0);
	if (c < 0)
		return 2;
	unsigned char *out = malloc(OUT);
	for (size_t i = 0; i < OUT; i++)
		out[i] = pat(i, 1);
	fcntl(c, F_SETFL, O_NONBLOCK);
	size_t sent = 0;
	for (int tries = 0; sent < OUT && tries < 100; tries++) {
		ssize_t w = write(c, out + sent, OUT - sent);
		if (w > 0)
			sent += w;
		else
			usleep(5000);
	}
	fcntl(c, F_SETFL, 0);
	printf("READY %d %zu\n", getpid(), sent);
	fflush(stdout);
	wait_go();
	answer(argv[4], run(c, (size_t)atol(argv[2])));
}
