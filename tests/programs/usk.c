/* Unix sockets of every kind, in one task (argv[1]: a directory):
 *  fd 3,4   stream socketpair, "stream-a-to-b" queued at 4, "stream-b-to-a" at 3;
 *           fd 3 is owned by the task (F_SETOWN) with signal SIGUSR2
 *  fd 5,6   dgram socketpair, 2 messages queued at 6
 *  fd 7,8   seqpacket socketpair, 1 message queued at 8, 7 shut for writing
 *  fd 9     stream listener at DIR/srv.sock (backlog 8)
 *  fd 10,11 client and accepted server socket, data both ways
 *  fd 12    client whose connection is pending in the listener (no data)
 *  fd 13    abstract seqpacket listener "@crit-test-abstract-PID"
 *  fd 14,15 its client and accepted socket, one message queued at 15
 *  fd 16    dgram socket bound at DIR/dgram.sock, 2 messages queued
 *  fd 17    dgram sender connected to it
 *  fd 18    stream listener at DIR/gone.sock, then unlinked
 *  fd 19    dgram socket bound by the relative name "rel.sock" in DIR
 * Prints "READY <pid>". */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <signal.h>

static void want(int got, int fd)
{
	if (got != fd) {
		fprintf(stderr, "expected fd %d got %d\n", fd, got);
		exit(1);
	}
}

static socklen_t addr(struct sockaddr_un *a, const char *path, int abstract)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	if (abstract) {
		a->sun_path[0] = 0;
		strcpy(a->sun_path + 1, path);
		return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(path);
	}
	strcpy(a->sun_path, path);
	return sizeof(*a);
}

int main(int argc, char **argv)
{
	const char *dir = argv[1];
	char path[200], abs_name[64];
	struct sockaddr_un a;
	socklen_t al;
	int sp[2];

	for (int fd = 3; fd < 40; fd++)
		close(fd);
	socketpair(AF_UNIX, SOCK_STREAM, 0, sp); want(sp[0], 3); want(sp[1], 4);
	write(3, "stream-a-to-b", 13);
	fcntl(3, F_SETOWN, getpid());
	fcntl(3, F_SETSIG, SIGUSR2);
	write(4, "stream-b-to-a", 13);
	socketpair(AF_UNIX, SOCK_DGRAM, 0, sp); want(sp[0], 5);
	write(5, "dgram-1", 7);
	write(5, "dgram-22", 8);
	socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp); want(sp[0], 7);
	write(7, "seqpacket-1", 11);
	shutdown(7, SHUT_WR);

	snprintf(path, sizeof(path), "%s/srv.sock", dir);
	int l = socket(AF_UNIX, SOCK_STREAM, 0); want(l, 9);
	al = addr(&a, path, 0);
	if (bind(l, (void *)&a, al) || listen(l, 8))
		return 2;
	int c = socket(AF_UNIX, SOCK_STREAM, 0); want(c, 10);
	if (connect(c, (void *)&a, al))
		return 3;
	int s = accept(l, NULL, NULL); want(s, 11);
	write(c, "client-to-server", 16);
	write(s, "server-to-client", 16);
	int pend = socket(AF_UNIX, SOCK_STREAM, 0); want(pend, 12);
	if (connect(pend, (void *)&a, al))
		return 4;

	snprintf(abs_name, sizeof(abs_name), "crit-test-abstract-%d", getpid());
	int al2 = socket(AF_UNIX, SOCK_SEQPACKET, 0); want(al2, 13);
	al = addr(&a, abs_name, 1);
	if (bind(al2, (void *)&a, al) || listen(al2, 4))
		return 5;
	int c2 = socket(AF_UNIX, SOCK_SEQPACKET, 0); want(c2, 14);
	if (connect(c2, (void *)&a, al))
		return 6;
	int s2 = accept(al2, NULL, NULL); want(s2, 15);
	write(c2, "abstract-msg", 12);

	snprintf(path, sizeof(path), "%s/dgram.sock", dir);
	int d = socket(AF_UNIX, SOCK_DGRAM, 0); want(d, 16);
	al = addr(&a, path, 0);
	if (bind(d, (void *)&a, al))
		return 7;
	int ds = socket(AF_UNIX, SOCK_DGRAM, 0); want(ds, 17);
	if (connect(ds, (void *)&a, al))
		return 8;
	write(ds, "dgram-to-bound-1", 16);
	write(ds, "dgram-to-bound-2", 16);

	snprintf(path, sizeof(path), "%s/gone.sock", dir);
	int g = socket(AF_UNIX, SOCK_STREAM, 0); want(g, 18);
	al = addr(&a, path, 0);
	if (bind(g, (void *)&a, al) || listen(g, 4))
		return 9;
	unlink(path);

	if (chdir(dir))
		return 10;
	int r = socket(AF_UNIX, SOCK_DGRAM, 0); want(r, 19);
	al = addr(&a, "rel.sock", 0);
	if (bind(r, (void *)&a, al))
		return 11;

	printf("READY %d\n", getpid());
	fflush(stdout);
	for (;;)
		pause();
}
