/*
 * ptyqueue RESULT HEARTBEAT MODE: bytes queued in four pty pairs one
 * task holds, which a dump must keep (tests/pty_queue.rs). On SIGUSR1 the
 * task checks that each end has exactly the bytes queued before the dump,
 * and appends "OK pid" or "FAIL pid: why" to RESULT (selfcheck.h). MODE
 * "kept" (a dump with -R) or "restored" says what a canonical slave has.
 *
 * Pair A, a new pty's default settings (canonical, echo, ONLCR), both
 * ends blocking: "typed\n" typed into the master (its echo read off) and
 * "out one\n" written to the slave ("out one\r\n" for the master), none
 * read. The check wants "out one\r\n" alone on the master (no echo, no
 * "\r\r\n"), the slave's line where it was with -R and gone after a
 * restore (a canonical slave is not dumped), both ends still blocking
 * and the settings as they were.
 *
 * Pair B, the master in packet mode and the slave raw, both O_NONBLOCK:
 * 6 bytes with control characters typed in, 5 with a NUL written out.
 * The check wants them back byte for byte (the master's read with its
 * packet status byte in front).
 *
 * Pair C, a non-canonical slave with echo, signals and CR-to-NL on:
 * "raw\rinput" typed (queued as "raw\ninput", echoed, the echo read
 * off). The check wants "raw\ninput" back and no second echo.
 *
 * Pair D, a raw slave: 10,000 bytes of a pattern written out (more than twice
 * what the line discipline holds; a pty holds about 20 KiB in all). The
 * check wants all of them, in order, on the master.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>

#include "selfcheck.h"

static int am, as, bm, bs, cm, cs, dm, ds;
static int kept;
static struct termios a_set, c_set;

static const char a_in[] = "typed\n";
static const char a_out[] = "out one\n";
static const char a_out_seen[] = "out one\r\n";
static const char b_in[] = {1, 2, 'r', 'a', 'w', (char)0xff};
static const char b_out[] = {'b', 'i', 'n', 0, (char)0xfe};
static const char c_in[] = "raw\rinput";
static const char c_queued[] = "raw\ninput";
#define D_LEN 10000

static unsigned char d_pat(int i) { return (unsigned char)(i * 7 + (i >> 8)); }

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static int queued(int fd)
{
	int n = -1;
	if (ioctl(fd, FIONREAD, &n))
		die("FIONREAD");
	return n;
}

/* Waits (up to 2 s) until fd has `want` bytes for its reader. */
static void wait_queued(int fd, int want, const char *what)
{
	for (int i = 0; i < 2000 && queued(fd) != want; i++)
		usleep(1000);
	if (queued(fd) != want) {
		fprintf(stderr, "%s: %d bytes queued, want %d\n", what, queued(fd), want);
		exit(1);
	}
}

static int new_pty(int *slave)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m < 0 || grantpt(m) || unlockpt(m))
		die("posix_openpt");
	*slave = open(ptsname(m), O_RDWR | O_NOCTTY);
	if (*slave < 0)
		die("open slave");
	return m;
}

/* One read, if poll says the fd has something now; -1 if not. */
static ssize_t read_now(int fd, char *buf, size_t len)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN))
		return -1;
	return read(fd, buf, len);
}

/* Wants exactly `want` (of `n` bytes) from one read of fd, then nothing. */
static void want_read(int fd, const char *want, size_t n, const char *what)
{
	char buf[256];
	ssize_t got = read_now(fd, buf, sizeof buf);
	if (got < 0)
		fail("%s: nothing to read", what);
	else if ((size_t)got != n || memcmp(buf, want, n))
		fail("%s: read %zd bytes, want %zu", what, got, n);
}

static void want_empty(int fd, const char *what)
{
	char buf[256];
	ssize_t got = read_now(fd, buf, sizeof buf);
	if (got >= 0)
		fail("%s: %zd more bytes", what, got);
}

static void want_flags(int fd, int nonblock, const char *what)
{
	int fl = fcntl(fd, F_GETFL);
	if (!!(fl & O_NONBLOCK) != nonblock)
		fail("%s: O_NONBLOCK %s", what, nonblock ? "lost" : "left set");
}

static void check(void)
{
	struct termios t;
	if (tcgetattr(as, &t))
		fail("A slave: tcgetattr: %s", strerror(errno));
	else if (t.c_lflag != a_set.c_lflag || t.c_oflag != a_set.c_oflag || t.c_iflag != a_set.c_iflag)
		fail("A slave: settings changed (lflag %#x oflag %#x, were %#x %#x)", t.c_lflag, t.c_oflag,
		     a_set.c_lflag, a_set.c_oflag);
	want_flags(am, 0, "A master");
	want_flags(as, 0, "A slave");
	want_flags(bm, 1, "B master");
	want_flags(bs, 1, "B slave");
	if (kept)
		want_read(as, a_in, strlen(a_in), "A slave");
	want_empty(as, "A slave");
	want_read(am, a_out_seen, strlen(a_out_seen), "A master");
	want_empty(am, "A master");
	want_read(bs, b_in, sizeof b_in, "B slave");
	want_empty(bs, "B slave");
	char pkt[1 + sizeof b_out] = {0};
	memcpy(pkt + 1, b_out, sizeof b_out);
	want_read(bm, pkt, sizeof pkt, "B master");
	want_empty(bm, "B master");
	if (tcgetattr(cs, &t) || t.c_lflag != c_set.c_lflag || t.c_iflag != c_set.c_iflag)
		fail("C slave: settings changed");
	want_read(cs, c_queued, strlen(c_queued), "C slave");
	want_empty(cs, "C slave");
	want_empty(cm, "C master (a second echo?)");
	unsigned char d[D_LEN];
	size_t got = 0;
	ssize_t r;
	/* More than one read: the kernel moves the rest in as room comes. */
	while (got < D_LEN) {
		struct pollfd p = {.fd = dm, .events = POLLIN};
		if (poll(&p, 1, 500) != 1 || (r = read(dm, d + got, D_LEN - got)) <= 0)
			break;
		got += r;
	}
	if (got != D_LEN)
		fail("D master: %zu of %d bytes", got, D_LEN);
	for (size_t i = 0; i < got; i++)
		if (d[i] != d_pat(i)) {
			fail("D master: byte %zu differs", i);
			break;
		}
	want_empty(dm, "D master");
}

int main(int argc, char **argv)
{
	if (argc != 4)
		return fprintf(stderr, "usage: ptyqueue RESULT HEARTBEAT kept|restored\n"), 2;
	result = argv[1];
	kept = !strcmp(argv[3], "kept");
	signal(SIGUSR1, on_usr1);

	am = new_pty(&as);
	if (tcgetattr(as, &a_set))
		die("tcgetattr");
	if (write(am, a_in, strlen(a_in)) != (ssize_t)strlen(a_in))
		die("write A master");
	wait_queued(as, strlen(a_in), "A slave");
	/* The echo: "typed\r\n". */
	wait_queued(am, strlen(a_in) + 1, "A master echo");
	char echo[64];
	if (read(am, echo, sizeof echo) != (ssize_t)strlen(a_in) + 1)
		die("read echo");
	if (write(as, a_out, strlen(a_out)) != (ssize_t)strlen(a_out))
		die("write A slave");
	wait_queued(am, strlen(a_out_seen), "A master");

	bm = new_pty(&bs);
	struct termios raw;
	if (tcgetattr(bs, &raw))
		die("tcgetattr B");
	cfmakeraw(&raw);
	raw.c_cc[VMIN] = 1;
	raw.c_cc[VTIME] = 0;
	if (tcsetattr(bs, TCSANOW, &raw))
		die("tcsetattr B");
	int on = 1;
	if (ioctl(bm, TIOCPKT, &on))
		die("TIOCPKT");
	fcntl(bm, F_SETFL, fcntl(bm, F_GETFL) | O_NONBLOCK);
	fcntl(bs, F_SETFL, fcntl(bs, F_GETFL) | O_NONBLOCK);
	if (write(bm, b_in, sizeof b_in) != sizeof b_in)
		die("write B master");
	if (write(bs, b_out, sizeof b_out) != sizeof b_out)
		die("write B slave");
	wait_queued(bs, sizeof b_in, "B slave");
	wait_queued(bm, sizeof b_out, "B master");

	cm = new_pty(&cs);
	if (tcgetattr(cs, &c_set))
		die("tcgetattr C");
	c_set.c_lflag &= ~ICANON;
	c_set.c_lflag |= ECHO | ISIG;
	c_set.c_iflag |= ICRNL;
	c_set.c_cc[VMIN] = 1;
	c_set.c_cc[VTIME] = 0;
	if (tcsetattr(cs, TCSANOW, &c_set) || tcgetattr(cs, &c_set))
		die("tcsetattr C");
	if (write(cm, c_in, strlen(c_in)) != (ssize_t)strlen(c_in))
		die("write C master");
	wait_queued(cs, strlen(c_queued), "C slave");
	/* The echo: "raw\r\ninput" (ONLCR on the echoed NL). */
	wait_queued(cm, strlen(c_queued) + 1, "C master echo");
	if (read(cm, echo, sizeof echo) != (ssize_t)strlen(c_queued) + 1)
		die("read C echo");

	dm = new_pty(&ds);
	struct termios draw;
	if (tcgetattr(ds, &draw))
		die("tcgetattr D");
	cfmakeraw(&draw);
	if (tcsetattr(ds, TCSANOW, &draw))
		die("tcsetattr D");
	unsigned char d[D_LEN];
	for (int i = 0; i < D_LEN; i++)
		d[i] = d_pat(i);
	/* Never blocks the test: all of it must fit, as the kernel moves
	 * the first bytes along to make room. */
	fcntl(ds, F_SETFL, fcntl(ds, F_GETFL) | O_NONBLOCK);
	size_t put = 0;
	for (int tries = 0; put < D_LEN && tries < 100; tries++) {
		ssize_t w = write(ds, d + put, D_LEN - put);
		if (w > 0)
			put += w;
		else
			usleep(10000);
	}
	if (put != D_LEN)
		die("write D slave");
	fcntl(ds, F_SETFL, fcntl(ds, F_GETFL) & ~O_NONBLOCK);
	usleep(100000);
	serve(argv[2], check);
}
