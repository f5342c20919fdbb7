/* Many kinds of files in one task (argv[1]: a directory). With argv[3] =
 * "kitchen" (like CRIU's kitchen fixture) also a pipe with data (fds 14,
 * 15), a second thread, and a child process sharing the descriptors and
 * joined to the parent by a socketpair (fd 16 parent, fd 17 child).
 *  fd 3     fifo DIR/fifo opened O_RDWR with "fifo-data" queued
 *  fd 4     DIR/ghost.txt, written "ghost-contents" then unlinked
 *  fd 5     eventfd with counter 42
 *  fd 6     epoll watching fd 5 (EPOLLIN, data 7)
 *  fd 7     timerfd armed (5 s, interval 5 s)
 *  fd 8     signalfd for SIGUSR2
 *  fd 9     inotify watching DIR
 *  fd 10    memfd "crit-memfd" holding "memfd-data"
 *  fd 11    TCP listener on 127.0.0.1:argv[2]
 *  fd 12    UDP socket bound on 127.0.0.1:argv[2]+1
 *  fd 13    netlink route socket
 *  fd 18    UDP socket connected to fd 12 (kitchen mode: after 14-17)
 *  fd 19    TCP listener on [::1]:argv[2]+2 (IPv6), if IPv6 works
 *  plus 64 KiB of shared anonymous memory starting "shared-anon",
 *  a SIGUSR1 handler and an interval timer.
 * Prints "READY <pid> <shared address>". */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <pthread.h>

static void want(int got, int fd)
{
	if (got != fd) {
		fprintf(stderr, "expected fd %d got %d\n", fd, got);
		exit(1);
	}
}

static void on_usr1(int s) { (void)s; }

static void *spin(void *a)
{
	(void)a;
	for (;;)
		pause();
	return NULL;
}

int main(int argc, char **argv)
{
	const char *dir = argv[1];
	int port = argc > 2 ? atoi(argv[2]) : 45678;
	char p[256];
	for (int fd = 3; fd < 40; fd++)
		close(fd);
	snprintf(p, sizeof(p), "%s/fifo", dir);
	mkfifo(p, 0600);
	want(open(p, O_RDWR), 3);
	write(3, "fifo-data", 9);
	snprintf(p, sizeof(p), "%s/ghost.txt", dir);
	want(open(p, O_RDWR | O_CREAT | O_TRUNC, 0644), 4);
	write(4, "ghost-contents", 14);
	unlink(p);
	want(eventfd(42, EFD_NONBLOCK), 5);
	want(epoll_create1(0), 6);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 7 };
	epoll_ctl(6, EPOLL_CTL_ADD, 5, &ev);
	want(timerfd_create(CLOCK_MONOTONIC, 0), 7);
	struct itimerspec its = { .it_value = { 5, 0 }, .it_interval = { 5, 0 } };
	timerfd_settime(7, 0, &its, NULL);
	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGUSR2);
	want(signalfd(-1, &ss, 0), 8);
	want(inotify_init1(0), 9);
	inotify_add_watch(9, dir, IN_CREATE | IN_DELETE);
	want(memfd_create("crit-memfd", 0), 10);
	write(10, "memfd-data", 10);
	int t = socket(AF_INET, SOCK_STREAM, 0); want(t, 11);
	int one = 1;
	setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	if (bind(t, (void *)&a, sizeof(a)) || listen(t, 5))
		return 2;
	int u = socket(AF_INET, SOCK_DGRAM, 0); want(u, 12);
	a.sin_port = htons(port + 1);
	if (bind(u, (void *)&a, sizeof(a)))
		return 3;
	want(socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE), 13);
	char *sh = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	strcpy(sh, "shared-anon");
	struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_RESTART };
	sigaction(SIGUSR1, &sa, NULL);
	struct itimerval it = { .it_interval = { 100, 0 }, .it_value = { 100, 0 } };
	setitimer(ITIMER_REAL, &it, NULL);
	if (argc > 3 && !strcmp(argv[3], "kitchen")) {
		int p[2], sp[2];
		if (pipe(p) || p[0] != 14 || write(15, "pipe-data", 9) != 9)
			return 4;
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) || sp[0] != 16)
			return 5;
		pthread_t t;
		pthread_create(&t, NULL, spin, NULL);
		pid_t c = fork();
		if (c == 0) {
			close(16);
			for (;;)
				pause();
		}
		close(17);
		if (write(16, "parent-to-child", 15) != 15)
			return 6;
		int uc = socket(AF_INET, SOCK_DGRAM, 0);
		if (uc != 17 && dup2(uc, 18) != 18)
			return 7;
		if (uc == 17) {
			dup2(17, 18);
			close(17);
		}
		if (connect(18, (void *)&a, sizeof(a)))
			return 8;
		int t6 = socket(AF_INET6, SOCK_STREAM, 0);
		struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons(port + 2) };
		inet_pton(AF_INET6, "::1", &a6.sin6_addr);
		if (t6 >= 0 && dup2(t6, 19) == 19 && bind(19, (void *)&a6, sizeof(a6)) == 0)
			listen(19, 3);
		else if (t6 >= 0)
			close(19); /* no IPv6 here: the dump would refuse it unbound */
		if (t6 >= 0 && t6 != 19)
			close(t6);
		char fd16[64];
		snprintf(fd16, sizeof fd16, "/proc/%d/fd/16", (int)c);
		while (access(fd16, F_OK) == 0)
			usleep(1000);
	}
	printf("READY %d %lx\n", getpid(), (unsigned long)sh);
	fflush(stdout);
	for (;;)
		pause();
}
