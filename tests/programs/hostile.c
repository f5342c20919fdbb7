/*
 * hostile MODE RESULT HEARTBEAT: a task in an odd state for crit dump
 * (tests/dump_hostile.rs). Writes a heartbeat counter to HEARTBEAT every
 * 2 ms and prints "READY pid". On SIGUSR1 (after a restore) it checks
 * its own state and appends "OK pid" or "FAIL pid: why" to RESULT.
 *
 * Modes:
 *  epoll-moved  an epoll watching two pipes under descriptor numbers
 *               that no longer hold them: pipe A's number was closed
 *               (a dup holds A), pipe B's was given to pipe C, which
 *               holds data (a dup holds B). After a restore the epoll
 *               must report A and B, each with its data, and not C.
 *  detached-fd, detached-cwd, detached-map
 *               a file held open, the working directory, or a file
 *               mapped, on a tmpfs since detached (umount -l): /proc
 *               shows its path inside that mount, which names nothing.
 *  netlink      netlink sockets of protocols other than NETLINK_ROUTE:
 *               a bound NETLINK_GENERIC one and an unbound
 *               NETLINK_SOCK_DIAG one; each must come back of its
 *               protocol, and the generic one must answer a request.
 *  closed-inet  TCP and UDP sockets that sock_diag does not list:
 *               TCP unbound (fd 3), TCP bound to 127.0.0.1 but not
 *               listening (fd 4), UDP unbound (fd 5), TCP over IPv6
 *               unbound with IPV6_V6ONLY (fd 6, where IPv6 exists).
 *               Each must come back of its kind, fd 4 on its port,
 *               and fd 3 must still connect.
 *  mapped-shared
 *               a file mapped shared twice, read-only below and
 *               writable above (in address order, the order a restore
 *               meets them), and a deleted file mapped shared and
 *               writable (its descriptor closed). After a restore a
 *               write through the writable mapping shows in the
 *               read-only one, and the deleted file's data is there.
 *  deleted-fifo a fifo held open (fd 3) after its path was unlinked: no
 *               path opens it again.
 *  mqueue       a POSIX message queue held open (fd 3), its name
 *               unlinked: a regular file to /proc, but not one a
 *               restore can make.
 *  secretmem    a secret memory area (memfd_secret) held open (fd 3)
 *               and mapped, with data in it: nothing can read it.
 *  map-limit    as many mappings as vm.max_map_count allows: no
 *               mapping can be added to it.
 *  guard        16 pages, each filled with its own letter, two of them
 *               guarded (MADV_GUARD_INSTALL, Linux 6.13): after a
 *               restore the same two are guards (pagemap bit 58) and
 *               the others hold their letters.
 *  vfork        a second thread waits in vfork for a child that pauses
 *               (and dies with it): that thread cannot be stopped.
 *  proc-files   its own /proc files held open: /proc/self/status (fd 3,
 *               16 bytes read) and /proc/PID/comm (fd 4). After a
 *               restore fd 3 is still at offset 16 and both are this
 *               task's files.
 *  proc-of-child
 *               a child that pauses (and dies with the task), whose
 *               /proc/CHILD/stat the task holds (fd 3).
 *  lost-leader  a child C in the process group of another child L that
 *               has exited and been reaped: the group has no leader.
 *               After a restore C is in group L again, the task in its
 *               own group as before, and the task has no child but C.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "selfcheck.h"

/* epoll-moved */
static int ep, a_w, b_w;

static void epoll_moved(void)
{
	int a[2], b[2], c[2];
	ep = epoll_create1(0);
	if (ep < 0 || pipe(a) || pipe(b) || pipe(c))
		exit(2);
	struct epoll_event ea = {.events = EPOLLIN, .data.u64 = 0xA};
	struct epoll_event eb = {.events = EPOLLIN, .data.u64 = 0xB};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, a[0], &ea) || epoll_ctl(ep, EPOLL_CTL_ADD, b[0], &eb))
		exit(2);
	/* A only under another number; B's number now holds C. */
	if (dup(a[0]) < 0 || dup(b[0]) < 0 || close(a[0]) || dup2(c[0], b[0]) < 0)
		exit(2);
	if (write(c[1], "c", 1) != 1)
		exit(2);
	a_w = a[1];
	b_w = b[1];
}

static const char *epoll_moved_check(void)
{
	struct epoll_event ev[4];
	if (epoll_wait(ep, ev, 4, 0) != 0)
		return "an event before any write: the epoll watches the wrong file";
	if (write(a_w, "a", 1) != 1 || write(b_w, "b", 1) != 1)
		return "write";
	int n = epoll_wait(ep, ev, 4, 1000);
	unsigned long got = 0;
	for (int i = 0; i < n; i++)
		got |= 1UL << (ev[i].data.u64 & 0xf);
	if (n != 2 || got != (1UL << 0xA | 1UL << 0xB))
		return "A and B were not both reported";
	return NULL;
}

/* detached-*: WHAT on a tmpfs mounted at RESULT.mnt, then detached. */
static void detached(const char *what)
{
	char mnt[4096], file[4200];
	snprintf(mnt, sizeof mnt, "%s.mnt", result);
	snprintf(file, sizeof file, "%s/file", mnt);
	if ((mkdir(mnt, 0700) && errno != EEXIST) || mount("none", mnt, "tmpfs", 0, NULL))
		exit(2);
	int fd = open(file, O_CREAT | O_RDWR, 0600);
	if (fd < 0 || ftruncate(fd, 4096))
		exit(2);
	if (!strcmp(what, "cwd")) {
		if (chdir(mnt))
			exit(2);
		close(fd);
	} else if (!strcmp(what, "map")) {
		if (mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED)
			exit(2);
		close(fd);
	}
	if (umount2(mnt, MNT_DETACH))
		exit(2);
}

/* netlink */
static int nl_gen, nl_diag;

static void netlink(void)
{
	nl_gen = socket(AF_NETLINK, SOCK_RAW, NETLINK_GENERIC);
	nl_diag = socket(AF_NETLINK, SOCK_RAW, NETLINK_SOCK_DIAG);
	struct sockaddr_nl a = {.nl_family = AF_NETLINK};
	if (nl_gen < 0 || nl_diag < 0 || bind(nl_gen, (struct sockaddr *)&a, sizeof a))
		exit(2);
}

static int protocol_of(int fd)
{
	int p = -1;
	socklen_t l = sizeof p;
	getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &p, &l);
	return p;
}

static const char *netlink_check(void)
{
	if (protocol_of(nl_gen) != NETLINK_GENERIC || protocol_of(nl_diag) != NETLINK_SOCK_DIAG)
		return "a netlink socket of another protocol";
	/* CTRL_CMD_GETFAMILY "nlctrl": the kernel answers GENL_ID_CTRL. */
	struct {
		struct nlmsghdr h;
		struct genlmsghdr g;
		struct nlattr a;
		char name[8];
	} req = {
		.h = {.nlmsg_len = sizeof req, .nlmsg_type = GENL_ID_CTRL,
		      .nlmsg_flags = NLM_F_REQUEST, .nlmsg_seq = 1},
		.g = {.cmd = CTRL_CMD_GETFAMILY, .version = 1},
		.a = {.nla_len = NLA_HDRLEN + 7, .nla_type = CTRL_ATTR_FAMILY_NAME},
		.name = "nlctrl",
	};
	struct sockaddr_nl k = {.nl_family = AF_NETLINK};
	if (sendto(nl_gen, &req, sizeof req, 0, (struct sockaddr *)&k, sizeof k) != sizeof req)
		return "send to the generic netlink socket";
	char buf[8192];
	struct nlmsghdr *h = (struct nlmsghdr *)buf;
	if (recv(nl_gen, buf, sizeof buf, 0) < (ssize_t)sizeof *h || h->nlmsg_type != GENL_ID_CTRL)
		return "no answer from generic netlink";
	return NULL;
}

/* closed-inet */
static int v6, bound_port;

static int port_of(int fd)
{
	struct sockaddr_in a;
	socklen_t l = sizeof a;
	if (getsockname(fd, (struct sockaddr *)&a, &l))
		return -1;
	return ntohs(a.sin_port);
}

static void closed_inet(void)
{
	struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (socket(AF_INET, SOCK_STREAM, 0) != 3 || socket(AF_INET, SOCK_STREAM, 0) != 4 ||
	    bind(4, (struct sockaddr *)&lo, sizeof lo) || socket(AF_INET, SOCK_DGRAM, 0) != 5)
		exit(2);
	bound_port = port_of(4);
	int one = 1;
	v6 = socket(AF_INET6, SOCK_STREAM, 0) == 6;
	if (v6 && setsockopt(6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one))
		exit(2);
}

static int opt(int fd, int level, int name)
{
	int v = -1;
	socklen_t l = sizeof v;
	getsockopt(fd, level, name, &v, &l);
	return v;
}

static const char *closed_inet_check(void)
{
	int want[4][3] = {{AF_INET, SOCK_STREAM, IPPROTO_TCP},
			  {AF_INET, SOCK_STREAM, IPPROTO_TCP},
			  {AF_INET, SOCK_DGRAM, IPPROTO_UDP},
			  {AF_INET6, SOCK_STREAM, IPPROTO_TCP}};
	for (int i = 0; i < 3 + v6; i++)
		if (opt(3 + i, SOL_SOCKET, SO_DOMAIN) != want[i][0] ||
		    opt(3 + i, SOL_SOCKET, SO_TYPE) != want[i][1] ||
		    opt(3 + i, SOL_SOCKET, SO_PROTOCOL) != want[i][2])
			return "a socket of another kind";
	if (port_of(4) != bound_port)
		return "the bound socket lost its port";
	if (port_of(3) != 0 || port_of(5) != 0)
		return "an unbound socket came back bound";
	if (v6 && opt(6, IPPROTO_IPV6, IPV6_V6ONLY) != 1)
		return "IPV6_V6ONLY lost";
	struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof lo;
	int srv = socket(AF_INET, SOCK_STREAM, 0);
	if (srv < 0 || bind(srv, (struct sockaddr *)&lo, sizeof lo) || listen(srv, 1) ||
	    getsockname(srv, (struct sockaddr *)&lo, &l) ||
	    connect(3, (struct sockaddr *)&lo, sizeof lo))
		return "the unbound TCP socket does not connect";
	return NULL;
}

/* mapped-shared */
static char *ro, *rw, *gone;

static char *map_file(const char *suffix, char *at, int prot)
{
	char path[4096];
	snprintf(path, sizeof path, "%s.%s", result, suffix);
	int fd = open(path, O_CREAT | O_RDWR, 0600);
	if (fd < 0 || ftruncate(fd, 4096))
		exit(2);
	char *p = mmap(at, 4096, prot, MAP_SHARED | (at ? MAP_FIXED : 0), fd, 0);
	if (p == MAP_FAILED)
		exit(2);
	close(fd);
	return p;
}

static void mapped_shared(void)
{
	char *area = mmap(NULL, 2 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		exit(2);
	ro = map_file("shared", area, PROT_READ);
	rw = map_file("shared", area + 4096, PROT_READ | PROT_WRITE);
	strcpy(rw, "before");
	gone = map_file("gone", NULL, PROT_READ | PROT_WRITE);
	strcpy(gone, "deleted");
	char path[4096];
	snprintf(path, sizeof path, "%s.gone", result);
	if (unlink(path))
		exit(2);
}

static const char *mapped_shared_check(void)
{
	if (strcmp(ro, "before") || strcmp(gone, "deleted"))
		return "mapped data lost";
	strcpy(rw, "after");
	strcpy(gone, "written");
	if (strcmp(ro, "after"))
		return "the two mappings are not of one file";
	return NULL;
}

/* deleted-fifo */
static void deleted_fifo(void)
{
	char path[4096];
	snprintf(path, sizeof path, "%s.fifo", result);
	if (mkfifo(path, 0600) || open(path, O_RDWR) != 3 || unlink(path))
		exit(2);
}

/* mqueue: mq_open(3) without librt. */
static void mqueue(void)
{
	char name[64];
	snprintf(name, sizeof name, "crit-hostile-%d", getpid());
	if (syscall(SYS_mq_open, name, O_CREAT | O_RDWR, 0600, NULL) != 3 ||
	    syscall(SYS_mq_unlink, name))
		exit(2);
}

static void secretmem(void)
{
	int fd = syscall(SYS_memfd_secret, 0);
	if (fd != 3 || ftruncate(fd, 4096))
		exit(2);
	char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		exit(2);
	strcpy(p, "secret");
}

static void map_limit(void)
{
	/* stdout needs no memory of its own later. */
	static char out[256];
	setvbuf(stdout, out, _IOFBF, sizeof out);
	/* Pages of alternate protection do not merge. */
	for (unsigned long i = 0;; i++) {
		int prot = (i & 1) ? PROT_READ : PROT_NONE;
		if (mmap(NULL, 4096, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED)
			break;
	}
}

static char *guarded;

static void guard(void)
{
	guarded = mmap(NULL, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (guarded == MAP_FAILED)
		exit(2);
	for (int i = 0; i < 16; i++)
		memset(guarded + i * 4096, 'a' + i, 4096);
	if (madvise(guarded + 4 * 4096, 2 * 4096, 102 /* MADV_GUARD_INSTALL */))
		exit(2);
}

static const char *guard_check(void)
{
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return "no pagemap";
	const char *why = NULL;
	for (int i = 0; i < 16 && !why; i++) {
		unsigned long long e = 0;
		off_t at = ((unsigned long)guarded / 4096 + i) * 8;
		if (pread(fd, &e, 8, at) != 8)
			why = "pagemap unreadable";
		else if ((i == 4 || i == 5) != (int)((e >> 58) & 1))
			why = "the guard pages are not where they were";
		else if (i != 4 && i != 5 && guarded[i * 4096] != 'a' + i)
			why = "a page lost its contents";
	}
	close(fd);
	return why;
}

/* The vfork child only makes raw system calls: it runs on the stack of
 * the thread that waits for it. */
static int vfork_told[2];

static void *vforker(void *arg)
{
	(void)arg;
	if (vfork() == 0) {
		syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
		/* Its parent thread waits in vfork by now (or within
		 * microseconds): the task is ready to be dumped. */
		syscall(SYS_write, vfork_told[1], "v", 1);
		for (;;)
			syscall(SYS_pause);
	}
	return NULL;
}

static void in_vfork(void)
{
	pthread_t t;
	char c;
	if (pipe2(vfork_told, O_CLOEXEC) || pthread_create(&t, NULL, vforker, NULL) ||
	    read(vfork_told[0], &c, 1) != 1)
		exit(2);
	close(vfork_told[0]);
	close(vfork_told[1]);
}

/* proc-files */
static void proc_files(void)
{
	char b[16], p[64];
	snprintf(p, sizeof p, "/proc/%d/comm", getpid());
	if (open("/proc/self/status", O_RDONLY) != 3 || read(3, b, sizeof b) != sizeof b ||
	    open(p, O_RDONLY) != 4)
		exit(2);
}

static const char *proc_files_check(void)
{
	char b[4096], want[64];
	if (lseek(3, 0, SEEK_CUR) != 16)
		return "fd 3 is not at offset 16";
	ssize_t n = pread(3, b, sizeof b - 1, 0);
	if (n <= 0)
		return "fd 3 does not read";
	b[n] = 0;
	snprintf(want, sizeof want, "\nPid:\t%d\n", getpid());
	if (!strstr(b, want))
		return "fd 3 is not this task's status";
	n = pread(4, b, sizeof b - 1, 0);
	if (n != 8 || memcmp(b, "hostile\n", 8))
		return "fd 4 is not this task's comm";
	return NULL;
}

/* proc-of-child */
static void proc_of_child(void)
{
	int told[2];
	char c, p[64];
	if (pipe(told))
		exit(2);
	pid_t child = fork();
	if (child == 0) {
		syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
		if (write(told[1], "c", 1) != 1)
			_exit(2);
		for (;;)
			pause();
	}
	if (child < 0 || read(told[0], &c, 1) != 1)
		exit(2);
	close(told[0]);
	close(told[1]);
	snprintf(p, sizeof p, "/proc/%d/stat", child);
	if (open(p, O_RDONLY) != 3)
		exit(2);
}

/* lost-leader: the group of the exited leader, the task's own group, C. */
static pid_t lost_pgid, own_pgid, lost_member;

static void lost_leader(void)
{
	int told[2];
	char c;
	own_pgid = getpgid(0);
	if (pipe(told))
		exit(2);
	pid_t l = fork();
	if (l == 0) {
		setpgid(0, 0);
		for (;;)
			pause();
	}
	if (l < 0 || setpgid(l, l))
		exit(2);
	pid_t m = fork();
	if (m == 0) {
		syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
		lost_member = 0;
		lost_pgid = l;
		quiet = 1;
		if (setpgid(0, l) || write(told[1], "c", 1) != 1)
			_exit(2);
		close(told[0]);
		close(told[1]);
		return; /* on to the main loop, as the member */
	}
	if (m < 0 || read(told[0], &c, 1) != 1)
		exit(2);
	close(told[0]);
	close(told[1]);
	kill(l, SIGKILL);
	if (waitpid(l, NULL, 0) != l)
		exit(2);
	lost_pgid = l;
	lost_member = m;
}

static const char *lost_leader_check(void)
{
	if (!lost_member) /* the member */
		return getpgid(0) == lost_pgid ? NULL : "the member is not in the lost leader's group";
	if (getpgid(0) == lost_pgid)
		return "the task is in the lost leader's group";
	if (getpgid(lost_member) != lost_pgid)
		return "its child is not in the lost leader's group";
	pid_t w = waitpid(-1, NULL, WNOHANG);
	if (w != 0)
		return "the task has a child to reap that it did not make";
	return NULL;
}

static const char *none(void) { return "not to be restored"; }

/* The mode's check, which returns its reason or NULL. */
static const char *(*answer)(void);
static void ask(void)
{
	const char *w = answer();
	if (w)
		fail("%s", w);
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	/* Nothing inherited from the test harness: fd numbers are checked. */
	syscall(SYS_close_range, 3, ~0U, 0);
	result = argv[2];
	const char *mode = argv[1];
	const char *(*check)(void);
	if (!strcmp(mode, "epoll-moved")) {
		epoll_moved();
		check = epoll_moved_check;
	} else if (!strcmp(mode, "netlink")) {
		netlink();
		check = netlink_check;
	} else if (!strcmp(mode, "closed-inet")) {
		closed_inet();
		check = closed_inet_check;
	} else if (!strcmp(mode, "mapped-shared")) {
		mapped_shared();
		check = mapped_shared_check;
	} else if (!strcmp(mode, "deleted-fifo")) {
		deleted_fifo();
		check = none;
	} else if (!strcmp(mode, "mqueue")) {
		mqueue();
		check = none;
	} else if (!strcmp(mode, "secretmem")) {
		secretmem();
		check = none;
	} else if (!strcmp(mode, "map-limit")) {
		map_limit();
		check = none;
	} else if (!strcmp(mode, "guard")) {
		guard();
		check = guard_check;
	} else if (!strcmp(mode, "vfork")) {
		in_vfork();
		check = none;
	} else if (!strcmp(mode, "proc-files")) {
		proc_files();
		check = proc_files_check;
	} else if (!strcmp(mode, "proc-of-child")) {
		proc_of_child();
		check = none;
	} else if (!strcmp(mode, "lost-leader")) {
		lost_leader();
		check = lost_leader_check;
	} else if (!strncmp(mode, "detached-", 9)) {
		detached(mode + 9);
		check = none;
	} else {
		return 2;
	}
	signal(SIGUSR1, on_usr1);
	answer = check;
	serve(argv[3], ask);
}
