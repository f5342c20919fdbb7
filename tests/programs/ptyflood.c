/*
 * ptyflood RESULT HEARTBEAT: a pty pair whose output nobody reads (a
 * terminal emulator that is frozen with the tree, as tmux running `yes`):
 * the parent holds the master and never reads it; its child writes "y\n"
 * to the slave until the pty is full and its write blocks
 * (tests/pty_queue.rs). A dump with -R must neither hang nor lose or
 * reorder the bytes. On SIGUSR1 the parent reads what the master holds
 * and checks it is "y\r\n" over and over (ONLCR on), and the child checks
 * the slave's output processing is still on; each appends "OK pid" or
 * "FAIL pid: why" to RESULT (selfcheck.h).
 */
#define _GNU_SOURCE
#include <poll.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <termios.h>

#include "selfcheck.h"

static int m, s;

static void check_master(void)
{
	static char buf[1 << 16];
	size_t got = 0;
	for (;;) {
		struct pollfd p = {.fd = m, .events = POLLIN};
		if (poll(&p, 1, 200) != 1)
			break;
		ssize_t r = read(m, buf, sizeof buf);
		if (r <= 0)
			break;
		for (ssize_t i = 0; i < r; i++) {
			char want = "y\r\n"[(got + i) % 3];
			if (buf[i] != want) {
				fail("byte %zu is %#x, want %#x", got + i, buf[i], want);
				return;
			}
		}
		got += r;
		if (got > 1 << 20)
			break;
	}
	if (got < 1000)
		fail("only %zu bytes on the master", got);
}

static void check_slave(void)
{
	struct termios t;
	if (tcgetattr(s, &t))
		fail("tcgetattr: %s", strerror(errno));
	else if (!(t.c_oflag & OPOST))
		fail("OPOST is off");
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return fprintf(stderr, "usage: ptyflood RESULT HEARTBEAT\n"), 2;
	result = argv[1];
	signal(SIGUSR1, on_usr1);
	m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m < 0 || grantpt(m) || unlockpt(m))
		return perror("posix_openpt"), 1;
	s = open(ptsname(m), O_RDWR | O_NOCTTY);
	if (s < 0)
		return perror("open slave"), 1;
	pid_t c = fork();
	if (c == 0) {
		quiet = 1;
		close(m);
		static char ys[8192];
		for (size_t i = 0; i < sizeof ys; i += 2)
			memcpy(ys + i, "y\n", 2);
		/* Writes until the pty is full; a write cut short (a signal, a
		 * dump) goes on where it stopped in the "y\n" stream. On SIGUSR1
		 * checks and reports. */
		size_t off = 0;
		for (;;) {
			if (asked) {
				asked = 0;
				check_slave();
				report();
			}
			ssize_t r = write(s, ys + off % 2, sizeof ys - 2);
			if (r > 0)
				off += r;
		}
	}
	close(s);
	s = -1;
	/* Until the pty is full. */
	for (int i = 0; i < 200; i++) {
		int n = 0;
		ioctl(m, FIONREAD, &n);
		if (n >= 4000)
			break;
		usleep(5000);
	}
	usleep(100000);
	serve(argv[2], check_master);
}
