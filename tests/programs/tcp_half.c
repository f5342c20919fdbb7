/* Five TCP connections to a peer outside the tree (the test, listening on
 * 127.0.0.1:argv[1], or [::1] with argv[2] "6"), each left half-closed in
 * another state for the dump:
 *   CW   CLOSE_WAIT  the peer sent argv[4] bytes and its FIN, none read;
 *   FW2  FIN_WAIT2   we sent "early" and our FIN, which the peer took;
 *   FW1  FIN_WAIT1   we wrote until the peer's window closed, then our FIN
 *                    waits behind the bytes;
 *   LA   LAST_ACK    the peer's FIN came first, then the same as FW1;
 *   CL   CLOSING     as FW1, and the peer's FIN came after ours was queued
 *                    (the test sends it once it sees READY).
 * Connects in that order (the test accepts in it), and prints
 * "READY <pid> <bytes FW1> <bytes LA> <bytes CL>".
 * On SIGUSR1, after the restore: reads CW's bytes (checked in order) and
 * its EOF, answers "bye" and ends its half; reads argv[5] bytes and EOF on
 * FW2 (the peer sends them after the restore), "ack" and EOF on FW1, EOF
 * on LA and CL. Writes "OK" or "FAIL: why" to argv[3]. */
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "tcpprog.h"

enum { CW, FW2, FW1, LA, CL, N };

/* Writes the pattern until the peer's window has stayed shut for 300 ms. */
static size_t fill(int c)
{
	static unsigned char buf[16384];
	size_t sent = 0;
	int shut = 0;
	fcntl(c, F_SETFL, O_NONBLOCK);
	while (shut < 30) {
		for (size_t k = 0; k < sizeof buf; k++)
			buf[k] = pat(sent + k, 1);
		ssize_t w = write(c, buf, sizeof buf);
		if (w > 0) {
			sent += w;
			shut = 0;
		} else {
			shut++;
			usleep(10000);
		}
	}
	fcntl(c, F_SETFL, 0);
	return sent;
}

/* Reads exactly `want` bytes (`fixed`, or the peer's pattern), then EOF. */
static const char *read_all(int c, size_t want, const char *fixed)
{
	static unsigned char buf[65536];
	size_t got = 0;
	for (;;) {
		struct pollfd p = { c, POLLIN, 0 };
		if (poll(&p, 1, 10000) != 1)
			return "timed out reading";
		ssize_t r = read(c, buf, sizeof buf);
		if (r < 0)
			return "read failed (reset?)";
		if (r == 0)
			return got == want ? NULL : "EOF too early";
		if (got + r > want)
			return "more bytes than the peer sent";
		for (ssize_t k = 0; k < r; k++)
			if (buf[k] != (fixed ? (unsigned char)fixed[got + k] : pat(got + k, 2)))
				return "a byte differs";
		got += r;
	}
}

static const char *check(int *c, size_t cw_bytes, size_t fw2_bytes)
{
	const char *why;
	if ((why = read_all(c[CW], cw_bytes, NULL)))
		return why;
	if (write(c[CW], "bye", 3) != 3 || shutdown(c[CW], SHUT_WR))
		return "writing bye on CLOSE_WAIT failed";
	if ((why = read_all(c[FW2], fw2_bytes, NULL)))
		return why;
	if ((why = read_all(c[FW1], 3, "ack")))
		return why;
	if ((why = read_all(c[LA], 0, NULL)))
		return why;
	if ((why = read_all(c[CL], 0, NULL)))
		return why;
	/* Our half is shut: a write must fail, not go anywhere. */
	signal(SIGPIPE, SIG_IGN);
	if (write(c[FW2], "x", 1) != -1 || errno != EPIPE)
		return "FIN_WAIT2 socket still writable";
	return NULL;
}

int main(int argc, char **argv)
{
	tcpprog_start();
	if (argc < 6)
		return 1;
	int c[N];
	for (int i = 0; i < N; i++)
		if ((c[i] = dial(argv[2][0] == '6', atoi(argv[1]), 0, i >= FW1 ? 32768 : 0)) < 0)
			return 2;
	if (write(c[FW2], "early", 5) != 5 || shutdown(c[FW2], SHUT_WR))
		return 3;
	size_t fw1 = fill(c[FW1]);
	shutdown(c[FW1], SHUT_WR);
	char b;
	struct pollfd p = { c[LA], POLLIN, 0 };
	if (poll(&p, 1, 10000) != 1 || read(c[LA], &b, 1) != 0)
		return 4; /* the peer's FIN first */
	size_t la = fill(c[LA]);
	shutdown(c[LA], SHUT_WR);
	size_t cl = fill(c[CL]);
	shutdown(c[CL], SHUT_WR);
	printf("READY %d %zu %zu %zu\n", getpid(), fw1, la, cl);
	fflush(stdout);
	wait_go();
	answer(argv[3], check(c, (size_t)atol(argv[4]), (size_t)atol(argv[5])));
}
