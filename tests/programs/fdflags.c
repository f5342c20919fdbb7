/* Descriptors whose flags a dump must keep: a socketpair (fd 3
 * close-on-exec and non-blocking, fd 4 neither) and a pipe (read end fd 5
 * plain, write end fd 6 close-on-exec). With argv[1] "ignore-trap" the
 * task ignores SIGTRAP, so that calls injected into it go one by one, not
 * in runs (see src/sys/inject_batch.rs). Prints "READY <pid>". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	syscall(SYS_close_range, 3, ~0U, 0);
	if (argc > 1 && !strcmp(argv[1], "ignore-trap"))
		signal(SIGTRAP, SIG_IGN);
	int sk[2], p[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sk) || pipe(p))
		return 1;
	if (sk[0] != 3 || p[0] != 5)
		return 2;
	fcntl(3, F_SETFD, FD_CLOEXEC);
	fcntl(3, F_SETFL, O_NONBLOCK);
	fcntl(6, F_SETFD, FD_CLOEXEC);
	printf("READY %d\n", getpid());
	fflush(stdout);
	for (;;)
		pause();
}
