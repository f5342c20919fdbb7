/*
 * ptys RESULT HEARTBEAT MODE: pty pairs both of whose ends the tree
 * holds, which a dump and a restore must keep (tests/ptys.rs). On
 * SIGUSR1 each task checks its own ptys and appends "OK pid" or
 * "FAIL pid: why; why..." to RESULT (selfcheck.h); meanwhile each writes
 * a heartbeat counter to HEARTBEAT.
 *
 * MODE "one": one task holds pair A, master and slave, the slave in raw
 * mode with VMIN 5, VTIME 7 and VINTR ^A, 33x111 (800x600 pixels), the
 * master in packet mode. Prints "READY pid indexA".
 *
 * MODE "tree" (tmux's and script's shape): the parent P holds pair A as
 * above and the master of pair B; between A and B it opened a third pty
 * and closed it again, so B's index has a free one below it. Its child C
 * calls setsid and opens B's slave as its controlling terminal on fds
 * 0-2, in raw mode with VMIN 3, VTIME 9, 44x122; C's child G leads a
 * group of its own, which C makes the terminal's foreground group. G
 * answers what it reads on the slave with "pong:" and the bytes read.
 * Prints "READY P C G indexA indexB".
 *
 * The checks: the same pty numbers (TIOCGPTN, ptsname, ttyname), the
 * settings and sizes as set, packet mode on A's master, C's session and
 * controlling terminal (tcgetsid) and G's group in the foreground
 * (tcgetpgrp), and data both ways: A's master to its slave and back in
 * P, B's master to G and G's answer back.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "selfcheck.h"

static pid_t p_pid, c_pid, g_pid;
static int a_master = -1, a_slave = -1, b_master = -1;
static int a_index = -1, b_index = -1;
static struct termios a_set, b_set;
static const struct winsize a_size = {.ws_row = 33, .ws_col = 111, .ws_xpixel = 800, .ws_ypixel = 600};
static const struct winsize b_size = {.ws_row = 44, .ws_col = 122};

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* A new pty: its master, unlocked, and its index. */
static int new_pty(int *index)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m < 0 || grantpt(m) || unlockpt(m) || ioctl(m, TIOCGPTN, index))
		return -1;
	return m;
}

/* Raw mode with distinctive control characters. */
static struct termios raw(int vmin, int vtime)
{
	struct termios t;
	memset(&t, 0, sizeof t);
	t.c_cflag = CS8 | CREAD | B38400;
	cfmakeraw(&t);
	t.c_cc[VMIN] = vmin;
	t.c_cc[VTIME] = vtime;
	t.c_cc[VINTR] = 1;
	return t;
}

static void want_termios(int fd, const char *what, const struct termios *want)
{
	struct termios t;
	if (tcgetattr(fd, &t)) {
		fail("%s: tcgetattr: %s", what, strerror(errno));
		return;
	}
	if (t.c_iflag != want->c_iflag || t.c_oflag != want->c_oflag ||
	    (t.c_cflag & ~CBAUD) != (want->c_cflag & ~CBAUD) || t.c_lflag != want->c_lflag)
		fail("%s: flags %o %o %o %o, not %o %o %o %o", what, t.c_iflag, t.c_oflag, t.c_cflag,
		     t.c_lflag, want->c_iflag, want->c_oflag, want->c_cflag, want->c_lflag);
	for (int i = 0; i < 17; i++)
		if (t.c_cc[i] != want->c_cc[i])
			fail("%s: c_cc[%d] is %d, not %d", what, i, t.c_cc[i], want->c_cc[i]);
}

static void want_size(int fd, const char *what, const struct winsize *want)
{
	struct winsize w;
	if (ioctl(fd, TIOCGWINSZ, &w))
		fail("%s: TIOCGWINSZ: %s", what, strerror(errno));
	else if (memcmp(&w, want, sizeof w))
		fail("%s: size %dx%d (%dx%d px), not %dx%d", what, w.ws_row, w.ws_col, w.ws_xpixel,
		     w.ws_ypixel, want->ws_row, want->ws_col);
}

/* Slave fd `fd` is /dev/pts/INDEX. */
static void want_name(int fd, const char *what, int index)
{
	char want[32], got[64];
	snprintf(want, sizeof want, "/dev/pts/%d", index);
	int e = ttyname_r(fd, got, sizeof got);
	if (e)
		fail("%s: ttyname: %s", what, strerror(e));
	else if (strcmp(got, want))
		fail("%s: is %s, not %s", what, got, want);
}

/* Master fd `fd` is pty INDEX. */
static void want_master(int fd, const char *what, int index)
{
	int n = -1;
	char name[64];
	if (ioctl(fd, TIOCGPTN, &n) || n != index)
		fail("%s: TIOCGPTN gives %d (%s), not %d", what, n, strerror(errno), index);
	char want[32];
	snprintf(want, sizeof want, "/dev/pts/%d", index);
	if (ptsname_r(fd, name, sizeof name) || strcmp(name, want))
		fail("%s: ptsname is not %s", what, want);
}

/* Reads from `fd` until `want` has come (5 s at most); `pkt`: a master
 * in packet mode, whose reads start with a status byte (0 for data; a
 * status change alone is one byte). */
static void want_read(int fd, const char *what, const char *want, int pkt)
{
	char got[256] = "";
	size_t have = 0;
	double end = now() + 5;
	while (strstr(got, want) == NULL && now() < end) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 100) <= 0)
			continue;
		char b[128];
		ssize_t n = read(fd, b, sizeof b);
		if (n <= 0) {
			fail("%s: read: %s", what, n ? strerror(errno) : "end of file");
			return;
		}
		char *d = b;
		if (pkt) {
			if (b[0] != 0)
				continue;
			d++;
			n--;
		}
		if (have + n >= sizeof got)
			break;
		memcpy(got + have, d, n);
		have += n;
		got[have] = 0;
	}
	if (strstr(got, want) == NULL)
		fail("%s: read \"%s\", not \"%s\"", what, got, want);
}

static void send(int fd, const char *what, const char *s)
{
	if (write(fd, s, strlen(s)) != (ssize_t)strlen(s))
		fail("%s: write: %s", what, strerror(errno));
}

static void check_a(void)
{
	int pkt = 0;
	want_master(a_master, "A's master", a_index);
	want_name(a_slave, "A's slave", a_index);
	want_termios(a_slave, "A's slave", &a_set);
	want_size(a_slave, "A's slave", &a_size);
	want_size(a_master, "A's master", &a_size);
	if (ioctl(a_master, TIOCGPKT, &pkt) || pkt != 1)
		fail("A's master: packet mode is %d", pkt);
	send(a_master, "A's master", "a-m2s");
	want_read(a_slave, "A's slave", "a-m2s", 0);
	send(a_slave, "A's slave", "a-s2m");
	want_read(a_master, "A's master", "a-s2m", 1);
}

static void check_p(void)
{
	check_a();
	if (b_master < 0)
		return;
	want_master(b_master, "B's master", b_index);
	want_size(b_master, "B's master", &b_size);
	send(b_master, "B's master", "b-m2s");
	want_read(b_master, "B's master", "pong:b-m2s", 0);
}

static void check_c(void)
{
	want_name(0, "C's fd 0", b_index);
	if (getsid(0) != c_pid)
		fail("C: session %d, not its own", getsid(0));
	pid_t s = tcgetsid(0);
	if (s != c_pid)
		fail("C: B's slave is not its controlling terminal (tcgetsid %d: %s)", s,
		     strerror(errno));
	pid_t fg = tcgetpgrp(0);
	if (fg != g_pid)
		fail("C: the foreground group is %d, not G's %d", fg, g_pid);
	want_termios(0, "B's slave", &b_set);
	want_size(0, "B's slave", &b_size);
}

static void check_g(void)
{
	want_name(0, "G's fd 0", b_index);
	if (getsid(0) != c_pid || getpgrp() != g_pid)
		fail("G: session %d group %d, not %d %d", getsid(0), getpgrp(), c_pid, g_pid);
	if (tcgetpgrp(0) != getpgrp())
		fail("G: its group is not in the foreground (%d)", tcgetpgrp(0));
}

/* The heartbeat, the checks, and for G the answers on B's slave. */
static void run(const char *heartbeat, void (*check)(void))
{
	int hb = open(heartbeat, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	for (unsigned long n = 0;; n++) {
		if (asked) {
			asked = 0;
			check();
			report();
		}
		if (getpid() == g_pid) {
			struct pollfd p = {.fd = 0, .events = POLLIN};
			char b[64] = "pong:";
			ssize_t got;
			if (poll(&p, 1, 0) > 0 && (got = read(0, b + 5, sizeof b - 6)) > 0)
				if (write(1, b, 5 + got) < 0)
					_exit(20);
		}
		char b[32];
		int l = snprintf(b, sizeof(b), "%lu\n", n);
		pwrite(hb, b, l, 0);
		usleep(2000);
	}
}

static void pair_a(void)
{
	a_master = new_pty(&a_index);
	if (a_master < 0)
		exit(3);
	a_slave = open(ptsname(a_master), O_RDWR | O_NOCTTY);
	a_set = raw(5, 7);
	int one = 1;
	if (a_slave < 0 || tcsetattr(a_slave, TCSANOW, &a_set) ||
	    ioctl(a_master, TIOCSWINSZ, &a_size) || ioctl(a_master, TIOCPKT, &one))
		exit(4);
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	syscall(SYS_close_range, 3, ~0U, 0);
	result = argv[1];
	signal(SIGUSR1, on_usr1);
	p_pid = getpid();
	pair_a();
	if (strcmp(argv[3], "one") == 0) {
		printf("READY %d %d\n", p_pid, a_index);
		fflush(stdout);
		run(argv[2], check_p);
	}
	int gap_index, gap = new_pty(&gap_index);
	b_master = new_pty(&b_index);
	if (gap < 0 || b_master < 0)
		return 5;
	close(gap);
	b_set = raw(3, 9);
	char b_name[64];
	int told[2];
	if (ptsname_r(b_master, b_name, sizeof b_name) || pipe(told))
		return 6;
	c_pid = fork();
	if (c_pid < 0)
		return 7;
	if (c_pid == 0) {
		c_pid = getpid();
		close(told[0]);
		close(a_master);
		close(a_slave);
		close(b_master);
		a_master = a_slave = b_master = -1;
		/* B's slave becomes C's controlling terminal as it opens it. */
		int s = setsid() < 0 ? -1 : open(b_name, O_RDWR);
		if (s < 0 || dup2(s, 0) < 0 || dup2(s, 1) < 0 || dup2(s, 2) < 0)
			_exit(8);
		if (s > 2)
			close(s);
		if (tcsetattr(0, TCSANOW, &b_set) || ioctl(0, TIOCSWINSZ, &b_size))
			_exit(9);
		g_pid = fork();
		if (g_pid < 0)
			_exit(10);
		if (g_pid == 0) {
			g_pid = getpid();
			close(told[1]);
			setpgid(0, 0);
			run(argv[2], check_g);
		}
		pid_t both[2] = {c_pid, g_pid};
		if (setpgid(g_pid, g_pid) && errno != EACCES)
			_exit(11);
		if (tcsetpgrp(0, g_pid) || write(told[1], both, sizeof both) != sizeof both)
			_exit(12);
		close(told[1]);
		run(argv[2], check_c);
	}
	close(told[1]);
	pid_t got[2];
	if (read(told[0], got, sizeof got) != sizeof got)
		return 9;
	close(told[0]);
	g_pid = got[1];
	printf("READY %d %d %d %d %d\n", p_pid, c_pid, g_pid, a_index, b_index);
	fflush(stdout);
	run(argv[2], check_p);
}
