/* Sockets crit dump refuses, by argv[1]:
 *  tcp           an established TCP connection to itself on 127.0.0.1:argv[2]
 *  scm           a unix socketpair with a descriptor in flight (SCM_RIGHTS)
 *                that no task holds any more, of a kind crit does not
 *                dump (a userfaultfd, closed after)
 *  pending-data  a unix stream connection, not yet accepted by its
 *                listener (argv[2] = socket path), that already sent data
 *                (refused with -R only)
 *  pending-closed  a connection pending in a listener whose client closed
 *  flock         a file (argv[2]) locked with flock()
 *  ofd-socket    a socketpair (fds 3, 4) whose fd 3 carries an open file
 *                description lock (pid -1 in /proc/locks)
 *  flock-mapped  a file (argv[2]) locked with flock(), mapped, and its
 *                descriptor closed: the mapping alone holds the lock
 * Prints "READY <pid>". */
#define _GNU_SOURCE
#include <sys/syscall.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>

int main(int argc, char **argv)
{
	/* Nothing inherited from the test harness: fd numbers are checked. */
	syscall(SYS_close_range, 3, ~0U, 0);
	const char *mode = argv[1];
	if (!strcmp(mode, "flock")) {
		int f = open(argv[2], O_RDWR | O_CREAT, 0644);
		if (f < 0 || flock(f, LOCK_EX))
			return 9;
	} else if (!strcmp(mode, "flock-mapped")) {
		int f = open(argv[2], O_RDWR | O_CREAT, 0644);
		if (f < 0 || ftruncate(f, 4096) || flock(f, LOCK_EX))
			return 9;
		if (mmap(NULL, 4096, PROT_READ, MAP_SHARED, f, 0) == MAP_FAILED)
			return 9;
		close(f);
	} else if (!strcmp(mode, "ofd-socket")) {
		int sp[2];
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) || fcntl(sp[0], F_OFD_SETLK, &fl))
			return 9;
	} else if (!strcmp(mode, "tcp")) {
		int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
		setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
		inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
		if (bind(l, (void *)&a, sizeof(a)) || listen(l, 1))
			return 2;
		int c = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(c, (void *)&a, sizeof(a)))
			return 3;
		if (accept(l, NULL, NULL) < 0)
			return 4;
	} else if (!strcmp(mode, "scm")) {
		int sp[2];
		socketpair(AF_UNIX, SOCK_STREAM, 0, sp);
		char byte = 'x';
		struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
		union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		/* A kind crit does not dump, held by no task once sent. */
		int uffd = syscall(SYS_userfaultfd, O_CLOEXEC);
		if (uffd < 0)
			return 5;
		memcpy(CMSG_DATA(c), &uffd, sizeof(int));
		if (sendmsg(sp[0], &m, 0) != 1)
			return 5;
		close(uffd);
	} else {
		struct sockaddr_un a = { .sun_family = AF_UNIX };
		snprintf(a.sun_path, sizeof(a.sun_path), "%s", argv[2]);
		int l = socket(AF_UNIX, SOCK_STREAM, 0);
		if (bind(l, (void *)&a, sizeof(a)) || listen(l, 4))
			return 6;
		int c = socket(AF_UNIX, SOCK_STREAM, 0);
		if (connect(c, (void *)&a, sizeof(a)))
			return 7;
		if (!strcmp(mode, "pending-closed"))
			close(c);
		else if (write(c, "early", 5) != 5)
			return 8;
	}
	printf("READY %d\n", getpid());
	fflush(stdout);
	for (;;)
		pause();
}
