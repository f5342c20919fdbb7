/* What the programs with a peer outside the tree share (tcp_peer.c,
 * tcp_half.c, tcp_connecting.c): a session of their own, a SIGUSR1 that
 * says "restored, check now", loopback connections, the pattern each end
 * writes, and the answer written for the test. */
#ifndef TCPPROG_H
#define TCPPROG_H
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "loopback.h"

static volatile sig_atomic_t go;
static void on_usr1(int s) { (void)s; go = 1; }

/* Closes what the test left open (a session of its own: restored without
 * --shell-job) and takes SIGUSR1. */
static void tcpprog_start(void)
{
	syscall(SYS_close_range, 3, ~0U, 0);
	setsid();
	signal(SIGUSR1, on_usr1);
}

/* The byte at offset i of what side `who` writes (1: the task, 2: the
 * test; tests/tcp.rs has the same). */
static __attribute__((unused)) unsigned char pat(size_t i, int who) { return (unsigned char)(i * 131 + who * 7 + (i >> 12)); }

/* A TCP socket (type flags such as SOCK_NONBLOCK in `flags`; a send
 * buffer of `sndbuf` bytes unless 0) connected to 127.0.0.1 or ::1 at
 * `port`, or still connecting when non-blocking; -1 on failure. */
static int dial(int v6, int port, int flags, int sndbuf)
{
	int c = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | flags, 0);
	if (c < 0)
		return -1;
	if (sndbuf)
		setsockopt(c, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
	struct sockaddr_storage a;
	socklen_t al = loopback(v6, port, &a);
	if (connect(c, (void *)&a, al) && errno != EINPROGRESS)
		return -1;
	return c;
}

/* Waits for SIGUSR1. */
static void wait_go(void)
{
	while (!go)
		pause();
}

/* Writes "OK", or "FAIL: why", to `path`, then waits to be killed. */
static void answer(const char *path, const char *why)
{
	FILE *f = fopen(path, "w");
	if (f) {
		fprintf(f, why ? "FAIL: %s" : "OK", why);
		fclose(f);
	}
	for (;;)
		pause();
}
#endif
