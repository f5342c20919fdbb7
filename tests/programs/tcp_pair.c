/* Two tasks joined by a TCP connection over loopback (argv[1]: "4" for
 * 127.0.0.1, "6" for ::1), with data queued both ways: the parent (the
 * server side, its listener still open) writes BIG bytes to the child,
 * whose small receive buffer leaves most of them in the parent's send
 * queue; the child writes SMALL bytes the parent does not read yet.
 * Prints "READY <parent pid> <child pid>". On SIGUSR1 each task reads
 * what it is owed, checks every byte in order, then the two exchange a
 * new message each way; each writes "OK" or "FAIL: why" to
 * argv[2].parent / argv[2].child. With argv[3] "packet" the parent
 * also holds a packet socket with an mmap'ed ring (after the
 * connection), which a dump refuses; with "lo" it first brings the loopback device up (for a
 * network namespace of its own). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <net/if.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "loopback.h"
#include <linux/if_packet.h>

/* A packet socket with a receive ring, which a dump refuses. */
static int packet_with_ring(void)
{
	int p = socket(AF_PACKET, SOCK_RAW, 0);
	struct tpacket_req r = {.tp_block_size = 4096, .tp_block_nr = 1, .tp_frame_size = 2048, .tp_frame_nr = 2};
	if (p < 0 || setsockopt(p, SOL_PACKET, PACKET_RX_RING, &r, sizeof r))
		return -1;
	return p;
}

#define BIG (3 << 20)
#define SMALL 20000

static volatile sig_atomic_t go;
static void on_usr1(int s) { (void)s; go = 1; }

static unsigned char pat(size_t i, int who) { return (unsigned char)(i * 131 + who * 7 + (i >> 12)); }

static void result(const char *base, const char *who, const char *msg)
{
	char p[512];
	snprintf(p, sizeof(p), "%s.%s", base, who);
	FILE *f = fopen(p, "w");
	if (f) {
		fputs(msg, f);
		fclose(f);
	}
}

/* Reads exactly n bytes (blocking, 10 s at most) and checks the pattern. */
static const char *take(int fd, size_t n, int who)
{
	static unsigned char buf[65536];
	size_t got = 0;
	while (got < n) {
		struct pollfd p = { fd, POLLIN, 0 };
		if (poll(&p, 1, 10000) != 1)
			return "timed out reading the queued bytes";
		size_t want = n - got < sizeof(buf) ? n - got : sizeof(buf);
		ssize_t r = read(fd, buf, want);
		if (r <= 0)
			return r == 0 ? "connection closed early" : "read failed";
		for (ssize_t k = 0; k < r; k++)
			if (buf[k] != pat(got + k, who))
				return "a queued byte differs";
		got += r;
	}
	return NULL;
}

static const char *exchange(int fd, const char *say, const char *hear)
{
	if (write(fd, say, strlen(say)) != (ssize_t)strlen(say))
		return "write after restore failed";
	char b[64] = { 0 };
	size_t got = 0, n = strlen(hear);
	while (got < n) {
		struct pollfd p = { fd, POLLIN, 0 };
		if (poll(&p, 1, 10000) != 1)
			return "no new message after restore";
		ssize_t r = read(fd, b + got, n - got);
		if (r <= 0)
			return "read of the new message failed";
		got += r;
	}
	return memcmp(b, hear, n) ? "the new message differs" : NULL;
}

static void wait_go(void)
{
	while (!go)
		pause();
}

int main(int argc, char **argv)
{
	syscall(SYS_close_range, 3, ~0U, 0);
	setsid(); /* a session of its own: restored without --shell-job */
	int v6 = argc > 1 && argv[1][0] == '6';
	const char *out = argc > 2 ? argv[2] : "/tmp/tcp_pair";
	signal(SIGUSR1, on_usr1);
	if (argc > 3 && !strcmp(argv[3], "lo")) {
		struct ifreq ifr = { 0 };
		int k = socket(AF_INET, SOCK_DGRAM, 0);
		strcpy(ifr.ifr_name, "lo");
		if (ioctl(k, SIOCGIFFLAGS, &ifr) < 0)
			return 6;
		ifr.ifr_flags |= IFF_UP;
		if (ioctl(k, SIOCSIFFLAGS, &ifr) < 0)
			return 7;
		close(k);
	}
	int fam = v6 ? AF_INET6 : AF_INET;
	struct sockaddr_storage ss;
	socklen_t sl = loopback(v6, 0, &ss);
	int l = socket(fam, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l, (void *)&ss, sl) || listen(l, 4) || getsockname(l, (void *)&ss, &sl))
		return 1;
	pid_t child = fork();
	if (child == 0) {
		int c = socket(fam, SOCK_STREAM, 0);
		int small = 32768;
		setsockopt(c, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
		if (connect(c, (void *)&ss, sl))
			return 2;
		unsigned char buf[SMALL];
		for (size_t i = 0; i < SMALL; i++)
			buf[i] = pat(i, 2);
		if (write(c, buf, SMALL) != SMALL)
			return 3;
		wait_go();
		const char *why = take(c, BIG, 1);
		if (!why)
			why = exchange(c, "pong", "ping");
		char msg[128];
		snprintf(msg, sizeof(msg), why ? "FAIL: %s" : "OK", why);
		result(out, "child", msg);
		for (;;)
			pause();
	}
	int s = accept(l, NULL, NULL);
	if (s < 0)
		return 4;
	if (argc > 3 && !strcmp(argv[3], "packet") && packet_with_ring() < 0)
		return 5;
	/* Fill the child's small receive buffer; the rest waits in ours. */
	fcntl(s, F_SETFL, O_NONBLOCK);
	unsigned char *big = malloc(BIG);
	for (size_t i = 0; i < BIG; i++)
		big[i] = pat(i, 1);
	size_t sent = 0;
	for (int tries = 0; sent < BIG && tries < 200; tries++) {
		ssize_t r = write(s, big + sent, BIG - sent);
		if (r > 0)
			sent += r;
		else
			usleep(5000);
	}
	/* Give the child time to queue its bytes for us. */
	usleep(200000);
	printf("READY %d %d %zu\n", getpid(), child, sent);
	fflush(stdout);
	wait_go();
	const char *why = NULL;
	int fl = fcntl(s, F_GETFL);
	fcntl(s, F_SETFL, fl & ~O_NONBLOCK);
	/* The rest of what we owe the child, then what it sent us. */
	size_t left = BIG - sent;
	while (left && !why) {
		ssize_t r = write(s, big + (BIG - left), left);
		if (r <= 0)
			why = "writing the rest failed";
		else
			left -= r;
	}
	if (!why)
		why = take(s, SMALL, 2);
	if (!why)
		why = exchange(s, "ping", "pong");
	char msg[128];
	snprintf(msg, sizeof(msg), why ? "FAIL: %s" : "OK", why);
	result(out, "parent", msg);
	for (;;)
		pause();
}
