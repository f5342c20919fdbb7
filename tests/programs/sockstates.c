/*
 * sockstates MODE RESULT HEARTBEAT [PORT]: a task holding some socket
 * state that a dump and a restore must keep (tests/socket_states.rs).
 * Socket files go next to RESULT; PORT is a free TCP/UDP port on
 * 127.0.0.1 (and PORT+1). Writes a heartbeat counter to HEARTBEAT every
 * 2 ms and prints "READY pid". On SIGUSR1 (after a restore) each task
 * checks its own state and appends "OK pid" or "FAIL pid: why; why..."
 * to RESULT, as states.c does.
 *
 * Modes:
 *  stream-partial  a stream pair: three writes of 4 bytes one way, 6 of
 *                  them read; two writes the other way.
 *  dgram-trunc     a dgram pair: messages of 3, 6 and 100 bytes one way,
 *                  one the other way; the check reads them with buffers
 *                  too small (MSG_TRUNC in msg_flags, and the real length
 *                  with MSG_TRUNC in flags).
 *  seqpacket-trunc the same over a seqpacket pair.
 *  peek-off        a stream pair with 10 bytes queued; SO_PEEK_OFF set to
 *                  0 and 4 bytes peeked (the offset is then 4).
 *  peek-off-dgram  a dgram pair, two messages, SO_PEEK_OFF 0 and 2 bytes
 *                  of the first peeked.
 *  shut-wr         a stream pair, data written then shutdown(SHUT_WR):
 *                  the peer reads the data, then EOF; the other way works.
 *  shut-rd         a stream pair, shutdown(SHUT_RD) on one end: it reads
 *                  EOF, its peer's writes fail with EPIPE.
 *  shut-both       shutdown(SHUT_RDWR) on one end after data both ways.
 *  dgram-senders   a dgram socket bound to a path, messages queued from
 *                  a socket bound to a path and connected to it, one
 *                  bound to an abstract name, one unbound: recvfrom names
 *                  each sender.
 *  dgram-client    a dgram socket bound to a path and connected to another
 *                  bound one, which holds two messages from it; after the
 *                  restore both name it and it still sends without an
 *                  address.
 *  names           listeners bound to an abstract name with a NUL and
 *                  bytes 0x01 0xff in it, by autobind, to a path of 107
 *                  bytes, to a path unlinked since, and to a path that
 *                  now holds a regular file.
 *  backlog         a listener with two connections not accepted, each
 *                  with data; accepted after the restore.
 *  passcred        a dgram pair, SO_PASSCRED on the receiver, a message
 *                  queued by a child: SCM_CREDENTIALS must name the child.
 *  scm-rights      a stream pair with a message carrying a pipe's read
 *                  end (which the task holds too) queued.
 *  opts-unix       SO_RCVBUF, SO_SNDBUF, SO_RCVTIMEO, SO_SNDTIMEO,
 *                  SO_RCVLOWAT, SO_PRIORITY, SO_MARK, O_NONBLOCK,
 *                  O_ASYNC with an owner and a socket filter on a unix
 *                  socket.
 *  opts-tcp        a TCP listener on PORT with SO_REUSEADDR, SO_REUSEPORT,
 *                  SO_KEEPALIVE, TCP_NODELAY, TCP_KEEPIDLE; an unbound TCP
 *                  socket with SO_KEEPALIVE.
 *  udp             a UDP socket bound to PORT with two datagrams queued
 *                  from a second one bound to PORT+1 and connected to it,
 *                  and a socket filter, IP_PKTINFO, IP_TOS and IP_TTL
 *                  on the first; SO_BROADCAST, SO_DONTROUTE, SO_PRIORITY,
 *                  SO_RCVBUF, SO_OOBINLINE, SO_LINGER and SO_BINDTODEVICE
 *                  on the second.
 *  v6only          IPv6 TCP listener on [::]:PORT with IPV6_V6ONLY and a
 *                  UDP6 socket on [::]:PORT+1 without it.
 *  tcp-pending     a TCP listener with a connection not accepted.
 *  shared          a stream pair made before a fork: both tasks hold one
 *                  end; the parent holds the other end twice (dup).
 *  raw             raw sockets: ICMP bound to 127.0.0.1 with ICMP_FILTER
 *                  passing echo replies only, IPPROTO_RAW (header
 *                  included), protocol 253 connected to 127.0.0.1 with
 *                  IP_NODEFRAG, ICMPv6 with ICMPV6_FILTER; and a ping
 *                  TCP as a raw protocol; a ping socket (ICMP datagram)
 *                  bound to identifier 4242, one connected (the
 *                  test lets gid 0 make them). The check reads them back
 *                  and pings 127.0.0.1 through the ICMP and ping sockets.
 *  packet          a raw packet socket for every protocol bound to lo,
 *                  non-blocking, with PACKET_AUXDATA, SO_RCVBUF, a
 *                  multicast membership, a fanout group and a filter
 *                  that keeps 96 bytes of each packet; a datagram
 *                  packet socket for IPv4 on every interface with
 *                  PACKET_VERSION, PACKET_RESERVE, PACKET_TIMESTAMP and
 *                  PACKET_LOSS. The check reads each option back, finds
 *                  the membership in /proc/net/dev_mcast, and sees a UDP
 *                  datagram to PORT on both sockets.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <netinet/icmp6.h>
#include <netinet/ip_icmp.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <libgen.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "selfcheck.h"

static char dir[4096];
static int port;

static void die(const char *what)
{
	fprintf(stderr, "setup: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void wr(int fd, const void *b, size_t n)
{
	if (send(fd, b, n, 0) != (ssize_t)n)
		die("send");
}

static void pair(int type, int sv[2])
{
	if (socketpair(AF_UNIX, type, 0, sv))
		die("socketpair");
}

static void nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* Reads exactly what is expected (non-blocking), names what differs. */
static void expect(int fd, const char *what, const char *want, size_t n)
{
	char b[256];
	ssize_t r = recv(fd, b, sizeof b, MSG_DONTWAIT);
	if (r < 0)
		fail("%s: recv: %s", what, strerror(errno));
	else if ((size_t)r != n || memcmp(b, want, n))
		fail("%s: got %zd bytes \"%.*s\", not \"%.*s\"", what, r, (int)(r > 0 ? r : 0), b,
		     (int)n, want);
}

static void expect_eof(int fd, const char *what)
{
	char b[16];
	ssize_t r = recv(fd, b, sizeof b, MSG_DONTWAIT);
	if (r != 0)
		fail("%s: no EOF (%zd, %s)", what, r, r < 0 ? strerror(errno) : "data");
}

static void expect_empty(int fd, const char *what)
{
	char b[16];
	ssize_t r = recv(fd, b, sizeof b, MSG_DONTWAIT);
	if (!(r < 0 && errno == EAGAIN))
		fail("%s: not empty (%zd, %s)", what, r, r < 0 ? strerror(errno) : "data");
}

static void expect_epipe(int fd, const char *what)
{
	ssize_t r = send(fd, "z", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (!(r < 0 && errno == EPIPE))
		fail("%s: send gave %zd (%s), not EPIPE", what, r, r < 0 ? strerror(errno) : "sent");
}

static int sv[2];

/* ---- stream-partial ---- */
static void stream_partial(void)
{
	pair(SOCK_STREAM, sv);
	wr(sv[0], "AAAA", 4);
	wr(sv[0], "BBBB", 4);
	wr(sv[0], "CCCC", 4);
	char b[6];
	if (recv(sv[1], b, 6, MSG_WAITALL) != 6)
		die("recv");
	wr(sv[1], "back1", 5);
	wr(sv[1], "back2", 5);
}

static void stream_partial_check(void)
{
	expect(sv[1], "the rest", "BBCCCC", 6);
	expect(sv[0], "the other way", "back1back2", 10);
	wr(sv[0], "new", 3);
	expect(sv[1], "new data", "new", 3);
}

/* ---- dgram-trunc, seqpacket-trunc ---- */
static char big[100];

static void trunc_setup(int type)
{
	pair(type, sv);
	memset(big, 'x', sizeof big);
	big[0] = 'b';
	wr(sv[0], "one", 3);
	wr(sv[0], "twotwo", 6);
	wr(sv[0], big, sizeof big);
	wr(sv[1], "rev", 3);
}
static void dgram_trunc(void) { trunc_setup(SOCK_DGRAM); }
static void seqpacket_trunc(void) { trunc_setup(SOCK_SEQPACKET); }

static void trunc_check(void)
{
	expect(sv[1], "first message", "one", 3);
	char b[2];
	struct iovec iov = {b, 2};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t r = recvmsg(sv[1], &m, MSG_DONTWAIT);
	if (r != 2 || memcmp(b, "tw", 2) || !(m.msg_flags & MSG_TRUNC))
		fail("second message: %zd bytes, flags %x (want 2, MSG_TRUNC)", r, m.msg_flags);
	r = recv(sv[1], b, 2, MSG_DONTWAIT | MSG_TRUNC);
	if (r != 100 || b[0] != 'b')
		fail("third message: MSG_TRUNC length %zd, not 100", r);
	expect_empty(sv[1], "after three messages");
	expect(sv[0], "the other way", "rev", 3);
}

/* ---- peek-off ---- */
static void peek_off(void)
{
	pair(SOCK_STREAM, sv);
	wr(sv[0], "0123456789", 10);
	int z = 0;
	if (setsockopt(sv[1], SOL_SOCKET, SO_PEEK_OFF, &z, sizeof z))
		die("SO_PEEK_OFF");
	char b[4];
	if (recv(sv[1], b, 4, MSG_PEEK) != 4)
		die("peek");
}

static void peek_off_check(void)
{
	int off = -2;
	socklen_t l = sizeof off;
	getsockopt(sv[1], SOL_SOCKET, SO_PEEK_OFF, &off, &l);
	if (off != 4)
		fail("SO_PEEK_OFF %d, not 4", off);
	char b[3];
	ssize_t r = recv(sv[1], b, 3, MSG_PEEK | MSG_DONTWAIT);
	if (r != 3 || memcmp(b, "456", 3))
		fail("peek at the offset: %zd \"%.*s\"", r, (int)(r > 0 ? r : 0), b);
	expect(sv[1], "the data", "0123456789", 10);
}

static void peek_off_dgram(void)
{
	pair(SOCK_DGRAM, sv);
	wr(sv[0], "first", 5);
	wr(sv[0], "second", 6);
	int z = 0;
	if (setsockopt(sv[1], SOL_SOCKET, SO_PEEK_OFF, &z, sizeof z))
		die("SO_PEEK_OFF");
	char b[2];
	if (recv(sv[1], b, 2, MSG_PEEK) != 2)
		die("peek");
}

static void peek_off_dgram_check(void)
{
	int off = -2;
	socklen_t l = sizeof off;
	getsockopt(sv[1], SOL_SOCKET, SO_PEEK_OFF, &off, &l);
	if (off != 2)
		fail("SO_PEEK_OFF %d, not 2", off);
	char b[8];
	ssize_t r = recv(sv[1], b, sizeof b, MSG_PEEK | MSG_DONTWAIT);
	if (r != 3 || memcmp(b, "rst", 3))
		fail("peek at the offset: %zd \"%.*s\"", r, (int)(r > 0 ? r : 0), b);
	expect(sv[1], "first", "first", 5);
	expect(sv[1], "second", "second", 6);
}

/* ---- shutdowns ---- */
static void shut_wr(void)
{
	pair(SOCK_STREAM, sv);
	wr(sv[0], "data", 4);
	if (shutdown(sv[0], SHUT_WR))
		die("shutdown");
	wr(sv[1], "resp", 4);
}

static void shut_wr_check(void)
{
	expect(sv[1], "data before EOF", "data", 4);
	expect_eof(sv[1], "the peer of SHUT_WR");
	expect(sv[0], "the other way", "resp", 4);
	expect_epipe(sv[0], "the end shut for writing");
	if (send(sv[1], "more", 4, MSG_DONTWAIT | MSG_NOSIGNAL) != 4)
		fail("the peer cannot write: %s", strerror(errno));
	else
		expect(sv[0], "more", "more", 4);
}

static void shut_rd(void)
{
	pair(SOCK_STREAM, sv);
	if (shutdown(sv[0], SHUT_RD))
		die("shutdown");
	wr(sv[0], "up", 2);
}

static void shut_rd_check(void)
{
	expect_eof(sv[0], "the end shut for reading");
	expect_epipe(sv[1], "the peer of SHUT_RD");
	expect(sv[1], "the other way", "up", 2);
	if (send(sv[0], "more", 4, MSG_DONTWAIT | MSG_NOSIGNAL) != 4)
		fail("the SHUT_RD end cannot write: %s", strerror(errno));
	else
		expect(sv[1], "more", "more", 4);
}

static void shut_both(void)
{
	pair(SOCK_STREAM, sv);
	wr(sv[0], "to1", 3);
	wr(sv[1], "to0", 3);
	if (shutdown(sv[0], SHUT_RDWR))
		die("shutdown");
}

static void shut_both_check(void)
{
	expect(sv[1], "data before EOF", "to1", 3);
	expect_eof(sv[1], "the peer");
	expect_epipe(sv[1], "the peer");
	expect_epipe(sv[0], "the shut end");
	/* A read-shut end still reads what was queued before (unix). */
	char b[8];
	ssize_t r = recv(sv[0], b, sizeof b, MSG_DONTWAIT);
	if (r != 3 && r != 0)
		fail("the shut end reads %zd (%s)", r, r < 0 ? strerror(errno) : "");
}

/* ---- dgram-senders ---- */
static struct sockaddr_un sun_path(const char *name, socklen_t *len)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof a.sun_path, "%s/%s", dir, name);
	*len = offsetof(struct sockaddr_un, sun_path) + strlen(a.sun_path) + 1;
	return a;
}

static const char abs_s2[] = "\0s2\0x\x01\xff";
static int r_sk, s1, s2, s3;

static void dgram_senders(void)
{
	socklen_t l;
	struct sockaddr_un ra = sun_path("r.sock", &l);
	r_sk = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (bind(r_sk, (void *)&ra, l))
		die("bind r");
	s1 = socket(AF_UNIX, SOCK_DGRAM, 0);
	socklen_t l1;
	struct sockaddr_un a1 = sun_path("s1.sock", &l1);
	if (bind(s1, (void *)&a1, l1) || connect(s1, (void *)&ra, l))
		die("s1");
	s2 = socket(AF_UNIX, SOCK_DGRAM, 0);
	struct sockaddr_un a2 = {.sun_family = AF_UNIX};
	memcpy(a2.sun_path, abs_s2, sizeof abs_s2 - 1);
	if (bind(s2, (void *)&a2, offsetof(struct sockaddr_un, sun_path) + sizeof abs_s2 - 1))
		die("s2");
	s3 = socket(AF_UNIX, SOCK_DGRAM, 0);
	wr(s1, "from1", 5);
	if (sendto(s2, "from2", 5, 0, (void *)&ra, l) != 5 ||
	    sendto(s3, "from3", 5, 0, (void *)&ra, l) != 5 || send(s1, "from1b", 6, 0) != 6)
		die("sendto");
}

static void from(const char *what, const char *want, const void *addr, socklen_t alen)
{
	char b[64];
	struct sockaddr_un a;
	socklen_t l = sizeof a;
	memset(&a, 0, sizeof a);
	ssize_t r = recvfrom(r_sk, b, sizeof b, MSG_DONTWAIT, (void *)&a, &l);
	if (r != (ssize_t)strlen(want) || memcmp(b, want, r)) {
		fail("%s: got %zd \"%.*s\"", what, r, (int)(r > 0 ? r : 0), b);
		return;
	}
	socklen_t off = offsetof(struct sockaddr_un, sun_path);
	if (l != alen + off || (alen && memcmp(a.sun_path, addr, alen))) {
		char hex[256] = "";
		for (socklen_t i = 0; i < l - off && i < 60; i++)
			sprintf(hex + strlen(hex), "%02x", (unsigned char)a.sun_path[i]);
		fail("%s: sender's address %s (len %u), not len %u", what, hex, l - off, alen);
	}
}

static void dgram_senders_check(void)
{
	socklen_t l1;
	struct sockaddr_un a1 = sun_path("s1.sock", &l1);
	socklen_t off = offsetof(struct sockaddr_un, sun_path);
	from("from s1", "from1", a1.sun_path, l1 - off);
	from("from s2", "from2", abs_s2, sizeof abs_s2 - 1);
	from("from s3", "from3", "", 0);
	from("from s1 again", "from1b", a1.sun_path, l1 - off);
	expect_empty(r_sk, "r after four");
	wr(s1, "after", 5);
	from("from s1 after", "after", a1.sun_path, l1 - off);
}

/* ---- dgram-client: only the bound, connected client has sent ---- */
static void dgram_client(void)
{
	socklen_t l, l1;
	struct sockaddr_un ra = sun_path("r.sock", &l);
	struct sockaddr_un a1 = sun_path("s1.sock", &l1);
	r_sk = socket(AF_UNIX, SOCK_DGRAM, 0);
	s1 = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (bind(r_sk, (void *)&ra, l) || bind(s1, (void *)&a1, l1) ||
	    connect(s1, (void *)&ra, l))
		die("dgram-client");
	wr(s1, "one", 3);
	wr(s1, "two", 3);
}

static void dgram_client_check(void)
{
	socklen_t l1;
	struct sockaddr_un a1 = sun_path("s1.sock", &l1);
	socklen_t off = offsetof(struct sockaddr_un, sun_path);
	from("first", "one", a1.sun_path, l1 - off);
	from("second", "two", a1.sun_path, l1 - off);
	expect_empty(r_sk, "r after two");
	if (send(s1, "three", 5, 0) != 5)
		fail("the client is not connected: %s", strerror(errno));
	else
		from("after", "three", a1.sun_path, l1 - off);
}

/* ---- names ---- */
static const char abs_l[] = "\0crit\0\x01\xff\nname";
static int l_abs, l_auto, l_long, l_gone, l_repl;
static struct sockaddr_un auto_name;
static socklen_t auto_len;
static char long_path[108], gone_path[256], repl_path[256];

static int listener_at(const void *addr, socklen_t len)
{
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0 || bind(s, addr, len) || listen(s, 4))
		die("listener");
	return s;
}

static socklen_t path_addr(struct sockaddr_un *a, const char *p)
{
	memset(a, 0, sizeof *a);
	a->sun_family = AF_UNIX;
	memcpy(a->sun_path, p, strlen(p));
	return offsetof(struct sockaddr_un, sun_path) + strlen(p) + 1;
}

static void names(void)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	memcpy(a.sun_path, abs_l, sizeof abs_l - 1);
	l_abs = listener_at(&a, offsetof(struct sockaddr_un, sun_path) + sizeof abs_l - 1);
	l_auto = socket(AF_UNIX, SOCK_STREAM, 0);
	if (bind(l_auto, (void *)&a, sizeof(sa_family_t)) || listen(l_auto, 4))
		die("autobind");
	auto_len = sizeof auto_name;
	getsockname(l_auto, (void *)&auto_name, &auto_len);
	/* 107 bytes and the NUL: as long as sun_path allows. */
	char d[4096];
	snprintf(d, sizeof d, "%s/d", dir);
	mkdir(d, 0755);
	snprintf(long_path, sizeof long_path, "%s/", d);
	size_t n = strlen(long_path);
	if (n > 100)
		die("the directory's name is too long");
	memset(long_path + n, 'L', 107 - n);
	long_path[107] = 0;
	l_long = listener_at(&a, path_addr(&a, long_path));
	snprintf(gone_path, sizeof gone_path, "%s/gone.sock", dir);
	l_gone = listener_at(&a, path_addr(&a, gone_path));
	unlink(gone_path);
	snprintf(repl_path, sizeof repl_path, "%s/repl.sock", dir);
	l_repl = listener_at(&a, path_addr(&a, repl_path));
	unlink(repl_path);
	int f = open(repl_path, O_WRONLY | O_CREAT | O_EXCL, 0644);
	if (f < 0 || write(f, "a regular file\n", 15) != 15)
		die("replace");
	close(f);
}

static void name_is(int s, const char *what, const void *want, socklen_t len)
{
	struct sockaddr_un a;
	socklen_t l = sizeof a;
	memset(&a, 0, sizeof a);
	if (getsockname(s, (void *)&a, &l) || l != len || memcmp(&a, want, len))
		fail("%s: getsockname differs (len %u, not %u)", what, l, len);
}

static void connects(const char *what, const void *addr, socklen_t len, int listener)
{
	int c = socket(AF_UNIX, SOCK_STREAM, 0);
	if (connect(c, addr, len)) {
		fail("%s: connect: %s", what, strerror(errno));
		close(c);
		return;
	}
	nonblock(listener);
	int a = accept4(listener, NULL, NULL, SOCK_NONBLOCK);
	if (a < 0)
		fail("%s: accept: %s", what, strerror(errno));
	close(a);
	close(c);
}

static void names_check(void)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	memcpy(a.sun_path, abs_l, sizeof abs_l - 1);
	socklen_t al = offsetof(struct sockaddr_un, sun_path) + sizeof abs_l - 1;
	name_is(l_abs, "abstract", &a, al);
	connects("abstract", &a, al, l_abs);
	name_is(l_auto, "autobind", &auto_name, auto_len);
	connects("autobind", &auto_name, auto_len, l_auto);
	socklen_t ll = path_addr(&a, long_path);
	name_is(l_long, "long path", &a, ll);
	connects("long path", &a, ll, l_long);
	name_is(l_gone, "unlinked", &a, path_addr(&a, gone_path));
	if (access(gone_path, F_OK) == 0)
		fail("the unlinked socket's path exists again");
	name_is(l_repl, "replaced", &a, path_addr(&a, repl_path));
	char b[64] = "";
	int f = open(repl_path, O_RDONLY);
	ssize_t r = f < 0 ? -1 : read(f, b, sizeof b);
	if (r != 15 || memcmp(b, "a regular file\n", 15))
		fail("the file that replaced a socket's path: %zd bytes (%s)", r,
		     f < 0 ? strerror(errno) : "");
	if (f >= 0)
		close(f);
}

/* ---- backlog ---- */
static int lis, c1, c2;

static void backlog(void)
{
	socklen_t l;
	struct sockaddr_un a = sun_path("lis.sock", &l);
	lis = listener_at(&a, l);
	c1 = socket(AF_UNIX, SOCK_STREAM, 0);
	c2 = socket(AF_UNIX, SOCK_STREAM, 0);
	if (connect(c1, (void *)&a, l) || connect(c2, (void *)&a, l))
		die("connect");
	wr(c1, "c1data", 6);
	wr(c2, "c2data", 6);
}

static void backlog_check(void)
{
	nonblock(lis);
	int a1 = accept4(lis, NULL, NULL, SOCK_NONBLOCK);
	int a2 = accept4(lis, NULL, NULL, SOCK_NONBLOCK);
	if (a1 < 0 || a2 < 0) {
		fail("accept: %s", strerror(errno));
		return;
	}
	expect(a1, "first pending", "c1data", 6);
	expect(a2, "second pending", "c2data", 6);
	wr(a1, "r1", 2);
	wr(a2, "r2", 2);
	expect(c1, "c1's answer", "r1", 2);
	expect(c2, "c2's answer", "r2", 2);
	if (accept4(lis, NULL, NULL, SOCK_NONBLOCK) >= 0)
		fail("a third connection");
	struct sockaddr_un n;
	socklen_t nl = sizeof n;
	socklen_t l;
	struct sockaddr_un want = sun_path("lis.sock", &l);
	if (getsockname(a1, (void *)&n, &nl) || nl != l || memcmp(&n, &want, l))
		fail("the accepted socket's name differs");
}

/* ---- passcred ---- */
static pid_t kid;

static void passcred(void)
{
	pair(SOCK_DGRAM, sv);
	int on = 1;
	if (setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &on, sizeof on))
		die("SO_PASSCRED");
	int told[2];
	char c;
	if (pipe(told))
		die("pipe");
	kid = fork();
	if (kid == 0) {
		quiet = 1;
		close(sv[1]);
		wr(sv[0], "cred", 4);
		if (write(told[1], "c", 1) != 1)
			_exit(2);
		close(told[0]);
		close(told[1]);
		return;
	}
	if (read(told[0], &c, 1) != 1)
		die("child");
	close(told[0]);
	close(told[1]);
}

static void passcred_check(void)
{
	if (!kid)
		return;
	int on = 0;
	socklen_t ol = sizeof on;
	getsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &on, &ol);
	if (!on)
		fail("SO_PASSCRED off");
	char b[16];
	union {
		char buf[CMSG_SPACE(sizeof(struct ucred))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {b, sizeof b};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			   .msg_controllen = sizeof u.buf};
	ssize_t r = recvmsg(sv[1], &m, MSG_DONTWAIT);
	if (r != 4 || memcmp(b, "cred", 4)) {
		fail("message: %zd", r);
		return;
	}
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	if (!c || c->cmsg_type != SCM_CREDENTIALS) {
		fail("no SCM_CREDENTIALS");
		return;
	}
	struct ucred uc;
	memcpy(&uc, CMSG_DATA(c), sizeof uc);
	if (uc.pid != kid || uc.uid != getuid() || uc.gid != getgid())
		fail("SCM_CREDENTIALS pid %d uid %d gid %d, not the sender %d", uc.pid, uc.uid,
		     uc.gid, kid);
}

/* ---- scm-rights ---- */
static int pp[2];

static void scm_rights(void)
{
	pair(SOCK_STREAM, sv);
	if (pipe(pp))
		die("pipe");
	if (write(pp[1], "pipedata", 8) != 8)
		die("write");
	char d = 'F';
	struct iovec iov = {&d, 1};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof u);
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			   .msg_controllen = sizeof u.buf};
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &pp[0], sizeof(int));
	if (sendmsg(sv[0], &m, 0) != 1)
		die("sendmsg");
	wr(sv[0], "after", 5);
}

static void scm_rights_check(void)
{
	char d[8];
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {d, 1};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			   .msg_controllen = sizeof u.buf};
	ssize_t r = recvmsg(sv[1], &m, MSG_DONTWAIT);
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	if (r != 1 || d[0] != 'F' || !c || c->cmsg_type != SCM_RIGHTS) {
		fail("message with the fd: %zd %s", r, r < 0 ? strerror(errno) : "");
		return;
	}
	int fd;
	memcpy(&fd, CMSG_DATA(c), sizeof fd);
	char b[16];
	r = read(fd, b, sizeof b);
	if (r != 8 || memcmp(b, "pipedata", 8))
		fail("the passed pipe reads %zd", r);
	if (write(pp[1], "x", 1) != 1 || read(fd, b, 1) != 1 || b[0] != 'x')
		fail("the passed fd is not the pipe the task writes");
	expect(sv[1], "after", "after", 5);
}

/* ---- opts-unix ---- */
static int o_vals[8];
static struct timeval o_rt, o_st;

static void read_opts(int s, int *v, struct timeval *rt, struct timeval *st)
{
	static const int opt[] = {SO_RCVBUF, SO_SNDBUF, SO_RCVLOWAT, SO_PRIORITY, SO_MARK};
	for (int i = 0; i < 5; i++) {
		socklen_t l = sizeof v[i];
		v[i] = -1;
		getsockopt(s, SOL_SOCKET, opt[i], &v[i], &l);
	}
	v[5] = fcntl(s, F_GETFL);
	v[6] = fcntl(s, F_GETOWN);
	socklen_t l = sizeof *rt;
	getsockopt(s, SOL_SOCKET, SO_RCVTIMEO, rt, &l);
	l = sizeof *st;
	getsockopt(s, SOL_SOCKET, SO_SNDTIMEO, st, &l);
}

static void set_int(int s, int lvl, int o, int v)
{
	if (setsockopt(s, lvl, o, &v, sizeof v))
		die("setsockopt");
}

/* Socket filters: a two-instruction classic BPF program (load the
 * packet's length, return `keep` bytes of it). */
static struct sock_filter prog_of(int i, unsigned keep)
{
	struct sock_filter p[2] = {BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0), BPF_STMT(BPF_RET | BPF_K, keep)};
	return p[i];
}

static void attach(int s, unsigned keep)
{
	struct sock_filter p[2] = {prog_of(0, keep), prog_of(1, keep)};
	struct sock_fprog f = {2, p};
	if (setsockopt(s, SOL_SOCKET, SO_ATTACH_FILTER, &f, sizeof f))
		die("SO_ATTACH_FILTER");
}

/* Fails unless `s` has the program attach() gave it. */
static void filter_is(int s, unsigned keep, const char *what)
{
	struct sock_filter got[4];
	socklen_t n = 4;
	if (getsockopt(s, SOL_SOCKET, SO_GET_FILTER, got, &n)) {
		fail("%s: SO_GET_FILTER: %s", what, strerror(errno));
		return;
	}
	int same = n == 2;
	for (int i = 0; same && i < 2; i++) {
		struct sock_filter w = prog_of(i, keep);
		same = !memcmp(&got[i], &w, sizeof w);
	}
	if (!same)
		fail("%s: the filter is lost or changed (%u instructions)", what, (unsigned)n);
}

static void opts_unix(void)
{
	pair(SOCK_STREAM, sv);
	set_int(sv[0], SOL_SOCKET, SO_RCVBUF, 100000);
	set_int(sv[0], SOL_SOCKET, SO_SNDBUF, 50000);
	set_int(sv[0], SOL_SOCKET, SO_RCVLOWAT, 7);
	set_int(sv[0], SOL_SOCKET, SO_PRIORITY, 5);
	set_int(sv[0], SOL_SOCKET, SO_MARK, 42);
	struct timeval rt = {3, 500000}, st = {1, 250000};
	setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &rt, sizeof rt);
	setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &st, sizeof st);
	attach(sv[0], 0xffffffff);
	fcntl(sv[0], F_SETOWN, getpid());
	fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK | O_ASYNC);
	signal(SIGIO, SIG_IGN);
	read_opts(sv[0], o_vals, &o_rt, &o_st);
}

static void opts_unix_check(void)
{
	static const char *name[] = {"SO_RCVBUF", "SO_SNDBUF", "SO_RCVLOWAT", "SO_PRIORITY",
				     "SO_MARK", "file flags", "owner"};
	int v[8];
	struct timeval rt, st;
	read_opts(sv[0], v, &rt, &st);
	for (int i = 0; i < 7; i++)
		if (v[i] != o_vals[i])
			fail("%s %d, not %d", name[i], v[i], o_vals[i]);
	if (rt.tv_sec != o_rt.tv_sec || rt.tv_usec != o_rt.tv_usec)
		fail("SO_RCVTIMEO %ld.%06ld", (long)rt.tv_sec, (long)rt.tv_usec);
	if (st.tv_sec != o_st.tv_sec || st.tv_usec != o_st.tv_usec)
		fail("SO_SNDTIMEO %ld.%06ld", (long)st.tv_sec, (long)st.tv_usec);
	filter_is(sv[0], 0xffffffff, "unix socket");
}

/* ---- opts-tcp ---- */
static int t_lis, t_cl;

static struct sockaddr_in lo(int p)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(p)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

static int geti(int s, int lvl, int o)
{
	int v = -1;
	socklen_t l = sizeof v;
	getsockopt(s, lvl, o, &v, &l);
	return v;
}

static void opts_tcp(void)
{
	t_lis = socket(AF_INET, SOCK_STREAM, 0);
	set_int(t_lis, SOL_SOCKET, SO_REUSEADDR, 1);
	set_int(t_lis, SOL_SOCKET, SO_REUSEPORT, 1);
	set_int(t_lis, SOL_SOCKET, SO_KEEPALIVE, 1);
	set_int(t_lis, IPPROTO_TCP, TCP_NODELAY, 1);
	set_int(t_lis, IPPROTO_TCP, TCP_KEEPIDLE, 77);
	struct sockaddr_in a = lo(port);
	if (bind(t_lis, (void *)&a, sizeof a) || listen(t_lis, 8))
		die("tcp listener");
	t_cl = socket(AF_INET, SOCK_STREAM, 0);
	set_int(t_cl, SOL_SOCKET, SO_KEEPALIVE, 1);
	set_int(t_cl, IPPROTO_TCP, TCP_NODELAY, 1);
}

static void opts_tcp_check(void)
{
	if (geti(t_lis, SOL_SOCKET, SO_REUSEADDR) != 1)
		fail("listener SO_REUSEADDR");
	if (geti(t_lis, SOL_SOCKET, SO_REUSEPORT) != 1)
		fail("listener SO_REUSEPORT");
	if (geti(t_lis, SOL_SOCKET, SO_KEEPALIVE) != 1)
		fail("listener SO_KEEPALIVE");
	if (geti(t_lis, IPPROTO_TCP, TCP_NODELAY) != 1)
		fail("listener TCP_NODELAY");
	if (geti(t_lis, IPPROTO_TCP, TCP_KEEPIDLE) != 77)
		fail("listener TCP_KEEPIDLE %d", geti(t_lis, IPPROTO_TCP, TCP_KEEPIDLE));
	if (geti(t_cl, SOL_SOCKET, SO_KEEPALIVE) != 1)
		fail("unbound SO_KEEPALIVE");
	if (geti(t_cl, IPPROTO_TCP, TCP_NODELAY) != 1)
		fail("unbound TCP_NODELAY");
	struct sockaddr_in a = lo(port);
	if (connect(t_cl, (void *)&a, sizeof a)) {
		fail("connect to the listener: %s", strerror(errno));
		return;
	}
	int s = accept(t_lis, NULL, NULL);
	if (s < 0)
		fail("accept: %s", strerror(errno));
	else if (geti(s, IPPROTO_TCP, TCP_NODELAY) != 1)
		fail("the accepted socket lacks the listener's TCP_NODELAY");
}

/* ---- udp ---- */
static int u1, u2, u2_vals[7];

/* The socket-level options of u2 the check compares: SO_BROADCAST,
 * SO_DONTROUTE, SO_PRIORITY, SO_RCVBUF, SO_OOBINLINE, SO_LINGER's
 * seconds, and whether it is bound to lo; set first with `set`. */
static void udp_opts(int *v, int set)
{
	if (set) {
		set_int(u2, SOL_SOCKET, SO_BROADCAST, 1);
		set_int(u2, SOL_SOCKET, SO_DONTROUTE, 1);
		set_int(u2, SOL_SOCKET, SO_PRIORITY, 3);
		set_int(u2, SOL_SOCKET, SO_RCVBUF, 100000);
		set_int(u2, SOL_SOCKET, SO_OOBINLINE, 1);
		struct linger lg = {1, 7};
		setsockopt(u2, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
		if (setsockopt(u2, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3))
			die("SO_BINDTODEVICE");
	}
	v[0] = geti(u2, SOL_SOCKET, SO_BROADCAST);
	v[1] = geti(u2, SOL_SOCKET, SO_DONTROUTE);
	v[2] = geti(u2, SOL_SOCKET, SO_PRIORITY);
	v[3] = geti(u2, SOL_SOCKET, SO_RCVBUF);
	v[4] = geti(u2, SOL_SOCKET, SO_OOBINLINE);
	struct linger lg = {0, 0};
	socklen_t l = sizeof lg;
	getsockopt(u2, SOL_SOCKET, SO_LINGER, &lg, &l);
	v[5] = lg.l_onoff ? lg.l_linger : -1;
	char dev[16] = "";
	l = sizeof dev;
	getsockopt(u2, SOL_SOCKET, SO_BINDTODEVICE, dev, &l);
	v[6] = !strcmp(dev, "lo");
}

static void udp(void)
{
	u1 = socket(AF_INET, SOCK_DGRAM, 0);
	u2 = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a1 = lo(port), a2 = lo(port + 1);
	if (bind(u1, (void *)&a1, sizeof a1) || bind(u2, (void *)&a2, sizeof a2) ||
	    connect(u2, (void *)&a1, sizeof a1))
		die("udp");
	wr(u2, "d1", 2);
	wr(u2, "d2", 2);
	attach(u1, 0xffff);
	set_int(u1, IPPROTO_IP, IP_PKTINFO, 1);
	set_int(u1, IPPROTO_IP, IP_TOS, 0x10);
	set_int(u1, IPPROTO_IP, IP_TTL, 33);
	udp_opts(u2_vals, 1);
}

static void udp_check(void)
{
	struct sockaddr_in a;
	socklen_t l = sizeof a;
	if (getsockname(u1, (void *)&a, &l) || ntohs(a.sin_port) != port)
		fail("u1 bound to %d", ntohs(a.sin_port));
	l = sizeof a;
	if (getpeername(u2, (void *)&a, &l) || ntohs(a.sin_port) != port)
		fail("u2 not connected to u1");
	char b[8];
	ssize_t r = recv(u1, b, sizeof b, MSG_DONTWAIT);
	if (r >= 0)
		fail("queued datagrams kept (%zd bytes)", r); /* as CRIU: not kept */
	wr(u2, "d3", 2);
	usleep(10000);
	struct sockaddr_in f;
	union {
		char buf[CMSG_SPACE(sizeof(struct in_pktinfo))];
		struct cmsghdr align;
	} cu;
	struct iovec iov = {b, sizeof b};
	struct msghdr m = {.msg_name = &f, .msg_namelen = sizeof f, .msg_iov = &iov, .msg_iovlen = 1,
			   .msg_control = cu.buf, .msg_controllen = sizeof cu.buf};
	r = recvmsg(u1, &m, MSG_DONTWAIT);
	if (r != 2 || memcmp(b, "d3", 2) || ntohs(f.sin_port) != port + 1)
		fail("after: %zd from port %d", r, ntohs(f.sin_port));
	struct cmsghdr *c = r == 2 ? CMSG_FIRSTHDR(&m) : NULL;
	if (!c || c->cmsg_level != IPPROTO_IP || c->cmsg_type != IP_PKTINFO)
		fail("no IP_PKTINFO with the datagram");
	filter_is(u1, 0xffff, "UDP socket");
	if (geti(u1, IPPROTO_IP, IP_TOS) != 0x10 || geti(u1, IPPROTO_IP, IP_TTL) != 33)
		fail("IP_TOS %#x, IP_TTL %d", geti(u1, IPPROTO_IP, IP_TOS), geti(u1, IPPROTO_IP, IP_TTL));
	static const char *name[] = {"SO_BROADCAST", "SO_DONTROUTE", "SO_PRIORITY", "SO_RCVBUF",
				     "SO_OOBINLINE", "SO_LINGER", "bound to lo"};
	int v[7];
	udp_opts(v, 0);
	for (int i = 0; i < 7; i++)
		if (v[i] != u2_vals[i])
			fail("u2 %s %d, not %d", name[i], v[i], u2_vals[i]);
}

/* ---- v6only ---- */
static int v6t, v6u;

static void v6only(void)
{
	v6t = socket(AF_INET6, SOCK_STREAM, 0);
	v6u = socket(AF_INET6, SOCK_DGRAM, 0);
	set_int(v6t, IPPROTO_IPV6, IPV6_V6ONLY, 1);
	set_int(v6u, IPPROTO_IPV6, IPV6_V6ONLY, 0);
	struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
	struct sockaddr_in6 b = {.sin6_family = AF_INET6, .sin6_port = htons(port + 1)};
	if (bind(v6t, (void *)&a, sizeof a) || listen(v6t, 4) || bind(v6u, (void *)&b, sizeof b))
		die("v6");
}

static void v6only_check(void)
{
	if (geti(v6t, IPPROTO_IPV6, IPV6_V6ONLY) != 1)
		fail("tcp6 IPV6_V6ONLY off");
	if (geti(v6u, IPPROTO_IPV6, IPV6_V6ONLY) != 0)
		fail("udp6 IPV6_V6ONLY on");
	/* V6ONLY: an IPv4 socket may take the port too. */
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = lo(port);
	if (bind(s, (void *)&a, sizeof a))
		fail("v4 bind beside a V6ONLY listener: %s", strerror(errno));
	close(s);
	/* and a v4 datagram reaches the dual-stack udp6 socket */
	s = socket(AF_INET, SOCK_DGRAM, 0);
	a = lo(port + 1);
	sendto(s, "v4", 2, 0, (void *)&a, sizeof a);
	close(s);
	usleep(10000);
	char b[4];
	if (recv(v6u, b, sizeof b, MSG_DONTWAIT) != 2)
		fail("udp6 does not get v4: %s", strerror(errno));
}

/* ---- tcp-pending ---- */
static void tcp_pending(void)
{
	t_lis = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = lo(port);
	if (bind(t_lis, (void *)&a, sizeof a) || listen(t_lis, 8))
		die("tcp listener");
	t_cl = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(t_cl, (void *)&a, sizeof a))
		die("connect");
}

static void none(void) { fail("not to be restored"); }

/* ---- shared ---- */
static int dupfd;

static void shared(void)
{
	pair(SOCK_STREAM, sv);
	dupfd = dup(sv[1]);
	nonblock(dupfd);
	int told[2];
	char c;
	if (pipe(told))
		die("pipe");
	kid = fork();
	if (kid == 0) {
		quiet = 1;
		if (write(told[1], "c", 1) != 1)
			_exit(2);
		close(told[0]);
		close(told[1]);
		return;
	}
	if (read(told[0], &c, 1) != 1)
		die("child");
	close(told[0]);
	close(told[1]);
}

static void shared_check(void)
{
	struct stat a, b;
	fstat(sv[1], &a);
	fstat(dupfd, &b);
	if (a.st_ino != b.st_ino)
		fail("the dup is another socket");
	if (!(fcntl(sv[1], F_GETFL) & O_NONBLOCK))
		fail("the dup's O_NONBLOCK is not shared");
	if (kid) {
		/* the parent writes; the child reads on its copy of sv[0] */
		wr(sv[1], "P", 1);
	} else {
		char c;
		if (recv(sv[0], &c, 1, 0) != 1 || c != 'P')
			fail("the child's copy of the shared end");
	}
}

/* ---- raw ---- */
/* From linux/icmp.h, whose linux/if.h clashes with net/if.h. */
#define ICMP_FILTER_ 1
struct icmp_filter_ {
	unsigned data;
};
static int r_icmp, r_hdr, r_conn, r_icmp6, r_ping, r_pingc, r_tcp;
static struct icmp6_filter r_f6;

static void raw_sockets(void)
{
	r_icmp = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
	r_hdr = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
	r_conn = socket(AF_INET, SOCK_RAW, 253);
	r_icmp6 = socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6);
	r_ping = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
	r_pingc = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
	r_tcp = socket(AF_INET, SOCK_RAW, IPPROTO_TCP);
	struct sockaddr_in a = lo(0), b = lo(4242);
	if (r_icmp < 0 || r_hdr < 0 || r_conn < 0 || r_icmp6 < 0 || r_ping < 0 || r_pingc < 0 ||
	    r_tcp < 0 || bind(r_icmp, (void *)&a, sizeof a) || connect(r_conn, (void *)&a, sizeof a) ||
	    bind(r_ping, (void *)&b, sizeof b) || connect(r_pingc, (void *)&a, sizeof a))
		die("raw sockets");
	struct icmp_filter_ f = {~(1U << ICMP_ECHOREPLY)};
	if (setsockopt(r_icmp, SOL_RAW, ICMP_FILTER_, &f, sizeof f))
		die("ICMP_FILTER");
	set_int(r_conn, IPPROTO_IP, IP_NODEFRAG, 1);
	ICMP6_FILTER_SETBLOCKALL(&r_f6);
	ICMP6_FILTER_SETPASS(ICMP6_ECHO_REPLY, &r_f6);
	if (setsockopt(r_icmp6, IPPROTO_ICMPV6, ICMP6_FILTER, &r_f6, sizeof r_f6))
		die("ICMP6_FILTER");
}

/* Sends an echo request to 127.0.0.1 on `s` and waits for its reply;
 * `ip`: what `s` reads starts with the IP header (a raw socket). */
static int pings(int s, int ip, unsigned short id)
{
	struct icmphdr e = {.type = ICMP_ECHO, .un.echo.id = htons(id), .un.echo.sequence = htons(7)};
	unsigned sum = 0;
	for (size_t i = 0; i < sizeof e / 2; i++)
		sum += ((unsigned short *)&e)[i];
	sum = (sum & 0xffff) + (sum >> 16);
	e.checksum = ~(sum + (sum >> 16));
	struct sockaddr_in to = lo(0);
	if (sendto(s, &e, sizeof e, 0, (void *)&to, sizeof to) != sizeof e)
		return 0;
	char b[2048];
	for (int tries = 0; tries < 100; tries++) {
		struct pollfd p = {s, POLLIN, 0};
		if (poll(&p, 1, 20) != 1)
			continue;
		ssize_t n = recv(s, b, sizeof b, MSG_DONTWAIT);
		int off = ip ? (b[0] & 0xf) * 4 : 0;
		struct icmphdr *r = (void *)(b + off);
		if (n >= off + (ssize_t)sizeof *r && r->type == ICMP_ECHOREPLY)
			return 1;
	}
	return 0;
}

static void raw_check(void)
{
	struct sockaddr_in a;
	socklen_t l = sizeof a;
	if (geti(r_icmp, SOL_SOCKET, SO_TYPE) != SOCK_RAW || geti(r_icmp, SOL_SOCKET, SO_PROTOCOL) != IPPROTO_ICMP)
		fail("the ICMP socket is type %d protocol %d", geti(r_icmp, SOL_SOCKET, SO_TYPE),
		     geti(r_icmp, SOL_SOCKET, SO_PROTOCOL));
	if (getsockname(r_icmp, (void *)&a, &l) || a.sin_addr.s_addr != htonl(INADDR_LOOPBACK))
		fail("the ICMP socket is not bound to 127.0.0.1");
	struct icmp_filter_ f;
	l = sizeof f;
	if (getsockopt(r_icmp, SOL_RAW, ICMP_FILTER_, &f, &l) || f.data != ~(1U << ICMP_ECHOREPLY))
		fail("ICMP_FILTER %#x", f.data);
	if (geti(r_hdr, IPPROTO_IP, IP_HDRINCL) != 1 || geti(r_hdr, SOL_SOCKET, SO_PROTOCOL) != IPPROTO_RAW)
		fail("the IPPROTO_RAW socket lost IP_HDRINCL or its protocol");
	/* A raw socket has no port, so no getpeername; connected, it sends
	 * without an address (EDESTADDRREQ otherwise). */
	if (send(r_conn, "raw", 3, 0) != 3)
		fail("the protocol 253 socket is not connected: %s", strerror(errno));
	if (geti(r_conn, IPPROTO_IP, IP_NODEFRAG) != 1 || geti(r_conn, SOL_SOCKET, SO_PROTOCOL) != 253)
		fail("the protocol 253 socket lost IP_NODEFRAG or its protocol");
	struct icmp6_filter f6;
	l = sizeof f6;
	if (getsockopt(r_icmp6, IPPROTO_ICMPV6, ICMP6_FILTER, &f6, &l) || memcmp(&f6, &r_f6, sizeof f6))
		fail("ICMP6_FILTER changed");
	l = sizeof a;
	if (getsockname(r_ping, (void *)&a, &l) || ntohs(a.sin_port) != 4242 ||
	    geti(r_ping, SOL_SOCKET, SO_TYPE) != SOCK_DGRAM)
		fail("the ping socket is not bound to identifier 4242");
	if (geti(r_tcp, SOL_SOCKET, SO_TYPE) != SOCK_RAW || geti(r_tcp, SOL_SOCKET, SO_PROTOCOL) != IPPROTO_TCP)
		fail("the raw TCP socket is type %d protocol %d", geti(r_tcp, SOL_SOCKET, SO_TYPE),
		     geti(r_tcp, SOL_SOCKET, SO_PROTOCOL));
	struct icmphdr e = {.type = ICMP_ECHO};
	if (send(r_pingc, &e, sizeof e, 0) != sizeof e)
		fail("the connected ping socket is not connected: %s", strerror(errno));
	if (!pings(r_icmp, 1, 99))
		fail("no echo reply on the ICMP socket");
	if (!pings(r_ping, 0, 4242))
		fail("no echo reply on the ping socket");
}

/* ---- packet ---- */
static int p_raw, p_dgram, p_vals[9];
static const unsigned char p_group[6] = {1, 0, 0x5e, 0, 0x7a, 0x7b};

/* What the check compares: the packet sockets' options and bindings. */
static void packet_opts(int *v)
{
	struct sockaddr_ll a;
	socklen_t l = sizeof a;
	memset(&a, 0, sizeof a);
	getsockname(p_raw, (void *)&a, &l);
	v[0] = a.sll_ifindex;
	v[1] = ntohs(a.sll_protocol);
	v[2] = geti(p_raw, SOL_PACKET, PACKET_AUXDATA);
	v[3] = geti(p_raw, SOL_PACKET, PACKET_FANOUT);
	v[4] = geti(p_raw, SOL_SOCKET, SO_RCVBUF);
	v[5] = fcntl(p_raw, F_GETFL) & O_NONBLOCK;
	v[6] = geti(p_dgram, SOL_PACKET, PACKET_VERSION);
	v[7] = geti(p_dgram, SOL_PACKET, PACKET_RESERVE);
	v[8] = geti(p_dgram, SOL_PACKET, PACKET_LOSS);
}

static void packet(void)
{
	p_raw = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, htons(ETH_P_ALL));
	p_dgram = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_IP));
	struct sockaddr_ll a = {.sll_family = AF_PACKET,
				.sll_protocol = htons(ETH_P_ALL),
				.sll_ifindex = if_nametoindex("lo")};
	if (p_raw < 0 || p_dgram < 0 || bind(p_raw, (void *)&a, sizeof a))
		die("packet sockets");
	set_int(p_raw, SOL_PACKET, PACKET_AUXDATA, 1);
	set_int(p_raw, SOL_SOCKET, SO_RCVBUF, 300000);
	struct packet_mreq m = {.mr_ifindex = a.sll_ifindex, .mr_type = PACKET_MR_MULTICAST, .mr_alen = 6};
	memcpy(m.mr_address, p_group, 6);
	if (setsockopt(p_raw, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &m, sizeof m))
		die("PACKET_ADD_MEMBERSHIP");
	set_int(p_raw, SOL_PACKET, PACKET_FANOUT, 4242 | PACKET_FANOUT_HASH << 16);
	attach(p_raw, 96);
	set_int(p_dgram, SOL_PACKET, PACKET_VERSION, TPACKET_V2);
	set_int(p_dgram, SOL_PACKET, PACKET_RESERVE, 64);
	set_int(p_dgram, SOL_PACKET, PACKET_TIMESTAMP, 1);
	set_int(p_dgram, SOL_PACKET, PACKET_LOSS, 1);
	packet_opts(p_vals);
}

/* The length of the first packet holding `mark` that socket `s` gets
 * within two seconds (among whatever else crosses lo meanwhile), or 0. */
static ssize_t sees(int s, const char *mark)
{
	static char b[65536];
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		struct pollfd p = {s, POLLIN, 0};
		if (poll(&p, 1, 10) == 1) {
			ssize_t r = recv(s, b, sizeof b, MSG_DONTWAIT);
			if (r > 0 && memmem(b, r, mark, strlen(mark)))
				return r;
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while (t.tv_sec - t0.tv_sec < 2);
	return 0;
}

static void packet_check(void)
{
	static const char *name[] = {"ifindex",	    "protocol",	      "PACKET_AUXDATA",
				     "PACKET_FANOUT", "SO_RCVBUF",	      "O_NONBLOCK",
				     "PACKET_VERSION", "PACKET_RESERVE", "PACKET_LOSS"};
	int v[9];
	packet_opts(v);
	for (int i = 0; i < 9; i++)
		if (v[i] != p_vals[i])
			fail("%s %d, not %d", name[i], v[i], p_vals[i]);
	char want[32], line[256];
	snprintf(want, sizeof want, "%02x%02x%02x%02x%02x%02x", p_group[0], p_group[1], p_group[2],
		 p_group[3], p_group[4], p_group[5]);
	FILE *f = fopen("/proc/net/dev_mcast", "r");
	int member = 0;
	while (f && fgets(line, sizeof line, f))
		member |= strstr(line, " lo ") && strstr(line, want);
	if (f)
		fclose(f);
	if (!member)
		fail("no membership of %s on lo", want);
	int u = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in to = lo(port);
	char mark[64], big[1000];
	snprintf(mark, sizeof mark, "packet-mark-%d", getpid());
	memset(big, 'x', sizeof big);
	memcpy(big, mark, strlen(mark));
	if (sendto(u, big, sizeof big, 0, (void *)&to, sizeof to) < 0)
		fail("sendto");
	filter_is(p_raw, 96, "raw packet socket");
	ssize_t n = sees(p_raw, mark);
	if (!n)
		fail("the raw socket on lo saw no datagram");
	else if (n > 96)
		fail("the raw socket's filter keeps %zd bytes, not 96", n);
	if (!sees(p_dgram, mark))
		fail("the IPv4 socket saw no datagram");
	close(u);
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	syscall(SYS_close_range, 3, ~0U, 0);
	result = argv[2];
	port = argc > 4 ? atoi(argv[4]) : 0;
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s", result);
	snprintf(dir, sizeof dir, "%s", dirname(tmp));
	const char *mode = argv[1];
	signal(SIGUSR1, on_usr1);
	signal(SIGPIPE, SIG_IGN);
	static const struct {
		const char *name;
		void (*setup)(void), (*check)(void);
	} modes[] = {
		{"stream-partial", stream_partial, stream_partial_check},
		{"dgram-trunc", dgram_trunc, trunc_check},
		{"seqpacket-trunc", seqpacket_trunc, trunc_check},
		{"peek-off", peek_off, peek_off_check},
		{"peek-off-dgram", peek_off_dgram, peek_off_dgram_check},
		{"shut-wr", shut_wr, shut_wr_check},
		{"shut-rd", shut_rd, shut_rd_check},
		{"shut-both", shut_both, shut_both_check},
		{"dgram-senders", dgram_senders, dgram_senders_check},
		{"names", names, names_check},
		{"backlog", backlog, backlog_check},
		{"passcred", passcred, passcred_check},
		{"dgram-client", dgram_client, dgram_client_check},
		{"scm-rights", scm_rights, scm_rights_check},
		{"opts-unix", opts_unix, opts_unix_check},
		{"opts-tcp", opts_tcp, opts_tcp_check},
		{"udp", udp, udp_check},
		{"v6only", v6only, v6only_check},
		{"tcp-pending", tcp_pending, none},
		{"shared", shared, shared_check},
		{"packet", packet, packet_check},
		{"raw", raw_sockets, raw_check},
	};
	void (*check)(void) = NULL;
	for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
		if (!strcmp(mode, modes[i].name)) {
			modes[i].setup();
			check = modes[i].check;
		}
	if (!check)
		return 2;
	serve(argv[3], check);
}
