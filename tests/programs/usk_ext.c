/* An outside process and a child to dump, joined by unix sockets:
 *  child fd 20: stream socketpair end; the other end stays in the parent
 *  child fd 21: dgram socket connected to the parent's socket bound at
 *              argv[1]/ext-dgram.sock
 *  child fd 22: stream connection to the parent's listener at
 *              argv[1]/ext-srv.sock (accepted by the parent)
 *  child fd 23: seqpacket socketpair end, the other end in the parent
 * argv[2] selects which sockets the child keeps ("all", or one of
 * "stream", "dgram", "conn", "seqpacket").
 * Prints "READY <child> <parent>". */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <signal.h>

int main(int argc, char **argv)
{
	const char *dir = argv[1];
	const char *keep = argc > 2 ? argv[2] : "all";
	signal(SIGPIPE, SIG_IGN);
	/* The child is reaped by the kernel when it dies (dumped and killed),
	 * so its pid is free for a restore. */
	signal(SIGCHLD, SIG_IGN);
	struct sockaddr_un a = { .sun_family = AF_UNIX }, b = { .sun_family = AF_UNIX };
	int sp[2], sq[2];
	for (int fd = 3; fd < 40; fd++)
		close(fd);
	socketpair(AF_UNIX, SOCK_STREAM, 0, sp);
	socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sq);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s/ext-dgram.sock", dir);
	snprintf(b.sun_path, sizeof(b.sun_path), "%s/ext-srv.sock", dir);
	unlink(a.sun_path);
	unlink(b.sun_path);
	int bound = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (bind(bound, (void *)&a, sizeof(a)))
		return 2;
	int lis = socket(AF_UNIX, SOCK_STREAM, 0);
	if (bind(lis, (void *)&b, sizeof(b)) || listen(lis, 4))
		return 3;
	int go[2];
	if (pipe(go))
		return 4;
	pid_t child = fork();
	if (child == 0) {
		close(go[1]);
		int d = socket(AF_UNIX, SOCK_DGRAM, 0);
		if (connect(d, (void *)&a, sizeof(a)))
			return 5;
		int c = socket(AF_UNIX, SOCK_STREAM, 0);
		if (connect(c, (void *)&b, sizeof(b)))
			return 6;
		write(sp[1], "to-parent", 9);
		write(d, "dgram-out", 9);
		int fds[4] = { sp[1], d, c, sq[1] };
		const char *names[4] = { "stream", "dgram", "conn", "seqpacket" };
		for (int i = 0; i < 4; i++) {
			int keep_it = !strcmp(keep, "all") || !strcmp(keep, names[i]);
			if (keep_it)
				dup2(fds[i], 20 + i);
			close(fds[i]);
		}
		close(sp[0]); close(sq[0]); close(bound); close(lis);
		char x;
		read(go[0], &x, 1);
		for (;;)
			pause();
	}
	close(sp[1]);
	close(sq[1]);
	int acc = accept(lis, NULL, NULL);
	write(acc, "from-parent", 11);
	write(sp[0], "to-child", 8);
	close(go[1]);
	/* The child closes lis last once its fds are in place. */
	char lfd[64];
	snprintf(lfd, sizeof lfd, "/proc/%d/fd/%d", (int)child, lis);
	while (access(lfd, F_OK) == 0)
		usleep(1000);
	printf("READY %d %d\n", child, getpid());
	fflush(stdout);
	for (;;)
		pause();
}
