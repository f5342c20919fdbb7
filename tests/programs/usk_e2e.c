/* Unix socket peers for the end-to-end dump/edit/restore tests
 * (tests/usk_e2e.rs). Every task waits in read() on a pipe of its own; its
 * SIGUSR1 handler writes a byte to that pipe, and the task then does its
 * one step (below) and waits again. After "READY ..." stdout and stderr
 * go to /dev/null, so the dumped tree holds no pipe or terminal of the
 * test; every program leads a session of its own (setsid), so a restore
 * needs no --shell-job. Modes:
 *
 *  client TYPE PATH   TYPE is stream, seqpacket or dgram: a socket at fd 20
 *                     connected to PATH (held outside the tree). Step: send
 *                     "TYPE-client-after-restore\n" on fd 20.
 *                     Prints "READY <pid>".
 *  pair FD            fd FD (inherited: one end of a stream socketpair) is
 *                     moved to fd 20. Step: send "from-task", read one
 *                     message from fd 20, send back "echo:" + that message.
 *                     Prints "READY <pid>".
 *  tree PATH RESULT   a server (the parent) with a stream listener at PATH
 *                     (fd 20) and the connection it accepted (fd 21); a
 *                     client (the child) holding the other end at fd 20,
 *                     after it sent "queued-for-server" (left unread).
 *                     Client step: send "client-hello\n" on fd 20.
 *                     Server step: read fd 21 to EOF, accept one connection
 *                     on fd 20 and read one line from it, then write
 *                     "old=<what fd 21 gave> eof=<1 or 0> new=<the line>"
 *                     to RESULT (each wait bounded to 5 s).
 *                     Prints "READY <parent> <child>". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int pfd[2];

static void on_usr1(int sig)
{
	(void)sig;
	char c = 'x';
	if (write(pfd[1], &c, 1) != 1)
		_exit(3);
}

static void arm(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_RESTART;
	if (pipe(pfd) || sigaction(SIGUSR1, &sa, NULL))
		_exit(2);
}

/* Blocks until SIGUSR1 arrived once more. */
static void wait_signal(void)
{
	char c;
	for (;;) {
		ssize_t n = read(pfd[0], &c, 1);
		if (n == 1)
			return;
		if (n < 0 && errno == EINTR)
			continue;
		_exit(4);
	}
}

static void quiet(void)
{
	fflush(stdout);
	int n = open("/dev/null", O_RDWR);
	if (n < 0 || dup2(n, 1) < 0 || dup2(n, 2) < 0)
		_exit(5);
	close(n);
}

static void move_to(int fd, int to)
{
	if (fd == to)
		return;
	if (dup2(fd, to) != to)
		_exit(6);
	close(fd);
}

static int readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, 5000) == 1;
}

static void set_path(struct sockaddr_un *a, const char *path)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(a->sun_path))
		_exit(7);
	strcpy(a->sun_path, path);
}

static int client(const char *type, const char *path)
{
	int t = !strcmp(type, "stream")	     ? SOCK_STREAM :
		!strcmp(type, "seqpacket") ? SOCK_SEQPACKET :
		!strcmp(type, "dgram")	     ? SOCK_DGRAM :
						       -1;
	if (t < 0)
		return 10;
	struct sockaddr_un a;
	set_path(&a, path);
	int s = socket(AF_UNIX, t, 0);
	if (s < 0 || connect(s, (void *)&a, sizeof(a)))
		return 11;
	move_to(s, 20);
	arm();
	printf("READY %d\n", getpid());
	quiet();
	char msg[64];
	int n = snprintf(msg, sizeof(msg), "%s-client-after-restore\n", type);
	for (;;) {
		wait_signal();
		if (send(20, msg, n, MSG_NOSIGNAL) != n)
			return 12;
	}
}

static int pair(int fd)
{
	move_to(fd, 20);
	arm();
	printf("READY %d\n", getpid());
	quiet();
	for (;;) {
		char buf[128] = "echo:";
		wait_signal();
		if (send(20, "from-task", 9, MSG_NOSIGNAL) != 9)
			return 20;
		if (!readable(20))
			return 21;
		ssize_t n = recv(20, buf + 5, sizeof(buf) - 5, 0);
		if (n <= 0)
			return 22;
		if (send(20, buf, 5 + n, MSG_NOSIGNAL) != 5 + n)
			return 23;
	}
}

/* Reads from fd until EOF or until a newline (line != 0); bounded waits. */
static int read_all(int fd, char *buf, size_t size, int line, int *eof)
{
	size_t got = 0;
	*eof = 0;
	while (got + 1 < size) {
		if (!readable(fd))
			break;
		ssize_t n = read(fd, buf + got, line ? 1 : size - 1 - got);
		if (n == 0) {
			*eof = 1;
			break;
		}
		if (n < 0)
			break;
		got += n;
		if (line && buf[got - 1] == '\n') {
			got--;
			break;
		}
	}
	buf[got] = 0;
	return got;
}

static int tree(const char *path, const char *result)
{
	struct sockaddr_un a;
	int sync[2];
	set_path(&a, path);
	unlink(path);
	alarm(10); /* the setup below never hangs the test */
	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (void *)&a, sizeof(a)) || listen(l, 4))
		return 30;
	move_to(l, 20);
	if (pipe(sync))
		return 31;
	pid_t child = fork();
	if (child < 0)
		return 32;
	if (child == 0) {
		close(20);
		close(sync[0]);
		int c = socket(AF_UNIX, SOCK_STREAM, 0);
		if (c < 0 || connect(c, (void *)&a, sizeof(a)))
			_exit(33);
		move_to(c, 20);
		if (write(20, "queued-for-server", 17) != 17)
			_exit(34);
		arm();
		quiet();
		close(sync[1]);
		for (;;) {
			wait_signal();
			if (send(20, "client-hello\n", 13, MSG_NOSIGNAL) != 13)
				_exit(35);
		}
	}
	close(sync[1]);
	int s = accept(20, NULL, NULL);
	if (s < 0)
		return 36;
	move_to(s, 21);
	char x;
	if (read(sync[0], &x, 1) != 0)
		return 37;
	close(sync[0]);
	alarm(0);
	arm();
	printf("READY %d %d\n", getpid(), child);
	quiet();
	for (;;) {
		char old[128], new[128];
		int eof, eof2;
		wait_signal();
		read_all(21, old, sizeof(old), 0, &eof);
		new[0] = 0;
		if (readable(20)) {
			int c = accept(20, NULL, NULL);
			if (c >= 0) {
				read_all(c, new, sizeof(new), 1, &eof2);
				close(c);
			}
		}
		FILE *f = fopen(result, "w");
		if (!f)
			return 38;
		fprintf(f, "old=%s eof=%d new=%s\n", old, eof, new);
		fclose(f);
	}
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	/* A session of its own: restored without --shell-job. */
	if (setsid() < 0)
		return 1;
	if (argc == 4 && !strcmp(argv[1], "client"))
		return client(argv[2], argv[3]);
	if (argc == 3 && !strcmp(argv[1], "pair"))
		return pair(atoi(argv[2]));
	if (argc == 4 && !strcmp(argv[1], "tree"))
		return tree(argv[2], argv[3]);
	fprintf(stderr, "usage: usk_e2e client TYPE PATH | pair FD | tree PATH RESULT\n");
	return 1;
}
