/* A session leader on a pty whose master the test holds: it opens the
 * slave (argv[1]) as its controlling terminal, puts it on fds 0-2 and
 * answers each line with "got:LINE"; to "check" it answers whether the
 * terminal is still its controlling one, with its group in the
 * foreground. Prints "READY <pid>" (on the test's pipe) first. */
#include <sys/syscall.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <termios.h>

int main(int argc, char **argv)
{
	syscall(SYS_close_range, 3, ~0U, 0);
	if (argc < 2 || setsid() < 0)
		return 1;
	int fd = open(argv[1], O_RDWR);
	if (fd < 0)
		return 1;
	printf("READY %d\n", getpid());
	fflush(stdout);
	dup2(fd, 0);
	dup2(fd, 1);
	dup2(fd, 2);
	if (fd > 2)
		close(fd);
	char line[256];
	while (fgets(line, sizeof(line), stdin)) {
		line[strcspn(line, "\r\n")] = 0;
		if (strcmp(line, "check") == 0) {
			int ok = isatty(0) && getsid(0) == getpid() &&
				 tcgetsid(0) == getpid() && tcgetpgrp(0) == getpgrp();
			printf("got:check:%s\n", ok ? "OK" : "BAD");
		} else {
			printf("got:%s\n", line);
		}
		fflush(stdout);
	}
	return 0;
}
