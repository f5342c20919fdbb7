/*
 * locks RESULT HEARTBEAT DIR: a parent and a child holding file locks
 * that a dump and a restore with --file-locks must keep
 * (tests/file_locks.rs). Writes a heartbeat counter to HEARTBEAT every
 * 2 ms and prints "READY parent child". On SIGUSR1 each task checks its
 * own locks and appends "OK pid" or "FAIL pid: why; why..." to RESULT.
 *
 * Files in DIR, opened in this order before the fork (the child
 * inherits every descriptor):
 *  fd 3  DIR/data: the parent's POSIX write lock on bytes 0-99 and read
 *        lock on bytes 200-299; the child's POSIX read lock on bytes
 *        200-299, taken through fd 3 after the fork.
 *  fd 4  DIR/data again, its own open file description: an OFD write
 *        lock from byte 1000 to the end of the file.
 *  fd 5  DIR/pid: flock LOCK_EX, taken before the fork.
 *
 * Each task checks its fdinfo "lock:" lines and /proc/locks for locks
 * under its own pid, and the parent forks a probe (another process, with
 * descriptors of its own) that asks F_GETLK, F_OFD_GETLK and flock
 * whether the locks are there and nothing more is.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "selfcheck.h"

static const char *dir;
static pid_t parent_pid, child_pid;
static unsigned long data_ino;

static char *path(const char *name)
{
	static char p[4096];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	return p;
}

/* One lock as /proc shows it. */
struct shown {
	char class[16], ty[16];
	int pid;
	unsigned long ino;
	long long start;
	char end[32];
};

static int parse(const char *s, struct shown *l)
{
	unsigned maj, min;
	char mode[16];
	return sscanf(s, "%*d: %15s %15s %15s %d %x:%x:%lu %lld %31s", l->class, mode, l->ty,
		      &l->pid, &maj, &min, &l->ino, &l->start, l->end) == 9;
}

/* The "lock:" lines of /proc/self/fdinfo/FD, "CLASS TYPE PID START END"
 * each, joined by "|". */
static void fdinfo_locks(int fd, char *out, size_t len)
{
	char p[64], line[512];
	snprintf(p, sizeof p, "/proc/self/fdinfo/%d", fd);
	out[0] = 0;
	FILE *f = fopen(p, "r");
	if (!f)
		return;
	while (fgets(line, sizeof line, f)) {
		struct shown l;
		if (strncmp(line, "lock:", 5) || !parse(line + 5, &l))
			continue;
		size_t n = strlen(out);
		snprintf(out + n, len - n, "%s%s %s %d %lld %s", n ? "|" : "", l.class, l.ty, l.pid,
			 l.start, l.end);
	}
	fclose(f);
}

static void want_fdinfo(int fd, const char *want)
{
	char got[1024];
	fdinfo_locks(fd, got, sizeof got);
	if (strcmp(got, want))
		fail("fd %d shows locks \"%s\", not \"%s\"", fd, got, want);
}

/* Checks that /proc/locks gives this process exactly the POSIX locks
 * `want` on DIR/data ("TYPE START END" each; /proc/locks lists them in
 * no set order). */
static void want_own_posix_locks(const char **want, int n)
{
	char line[512], got[1024] = "";
	int seen = 0, found = 0;
	FILE *f = fopen("/proc/locks", "r");
	if (!f) {
		fail("/proc/locks: %s", strerror(errno));
		return;
	}
	while (fgets(line, sizeof line, f)) {
		struct shown l;
		char one[128];
		if (!parse(line, &l) || l.pid != getpid() || l.ino != data_ino ||
		    strcmp(l.class, "POSIX"))
			continue;
		snprintf(one, sizeof one, "%s %lld %s", l.ty, l.start, l.end);
		size_t k = strlen(got);
		snprintf(got + k, sizeof got - k, "%s%s", k ? "|" : "", one);
		seen++;
		for (int i = 0; i < n; i++)
			found += !strcmp(one, want[i]);
	}
	fclose(f);
	if (seen != n || found != n)
		fail("/proc/locks gives %d the POSIX locks \"%s\"", getpid(), got);
}

/* What F_GETLK (or F_OFD_GETLK) says of a lock of `type` on `len`
 * bytes from `start` of DIR/data, asked through a new descriptor. */
static int conflict(int cmd, int type, off_t start, off_t len, pid_t *by)
{
	int fd = open(path("data"), O_RDWR);
	struct flock l = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
	int r = fd < 0 || fcntl(fd, cmd, &l) ? -1 : l.l_type;
	*by = l.l_pid;
	close(fd);
	return r;
}

/* The probe: a process of its own, which must see every lock of the
 * tree from outside and nothing more. */
static void probe(void)
{
	pid_t by;
	int t;
	if ((t = conflict(F_GETLK, F_WRLCK, 0, 100, &by)) != F_WRLCK || by != parent_pid)
		fail("probe: bytes 0-99 not write-locked by %d (type %d, pid %d)", parent_pid, t, by);
	if ((t = conflict(F_GETLK, F_WRLCK, 100, 100, &by)) != F_UNLCK)
		fail("probe: bytes 100-199 locked (type %d, pid %d)", t, by);
	if ((t = conflict(F_GETLK, F_RDLCK, 200, 100, &by)) != F_UNLCK)
		fail("probe: bytes 200-299 not shared with readers (type %d, pid %d)", t, by);
	if ((t = conflict(F_GETLK, F_WRLCK, 200, 100, &by)) != F_RDLCK)
		fail("probe: bytes 200-299 not read-locked (type %d, pid %d)", t, by);
	if ((t = conflict(F_GETLK, F_WRLCK, 300, 700, &by)) != F_UNLCK)
		fail("probe: bytes 300-999 locked (type %d, pid %d)", t, by);
	if ((t = conflict(F_OFD_GETLK, F_RDLCK, 5000, 10, &by)) != F_WRLCK || by != -1)
		fail("probe: byte 5000 not under an OFD write lock (type %d, pid %d)", t, by);
	int f = open(path("pid"), O_RDONLY);
	if (f < 0 || flock(f, LOCK_SH | LOCK_NB) == 0 || errno != EWOULDBLOCK)
		fail("probe: DIR/pid is not flocked (%s)", strerror(errno));
	close(f);
}

/* Runs the probe in a child and adds what it found. */
static void ask_probe(void)
{
	int p[2];
	if (pipe(p)) {
		fail("pipe: %s", strerror(errno));
		return;
	}
	pid_t c = fork();
	if (c == 0) {
		close(p[0]);
		why[0] = 0; /* the probe's own findings only */
		probe();
		if (write(p[1], why, strlen(why)) < 0)
			_exit(1);
		_exit(0);
	}
	close(p[1]);
	char got[4096];
	ssize_t n = read(p[0], got, sizeof got - 1);
	close(p[0]);
	waitpid(c, NULL, 0);
	if (n > 0) {
		got[n] = 0;
		fail("%s", got);
	}
}

static void check(void)
{
	char want[256];
	pid_t me = getpid();
	if (me == parent_pid) {
		snprintf(want, sizeof want, "POSIX WRITE %d 0 99|POSIX READ %d 200 299", me, me);
		want_fdinfo(3, want);
	} else {
		snprintf(want, sizeof want, "POSIX READ %d 200 299", me);
		want_fdinfo(3, want);
	}
	want_fdinfo(4, "OFDLCK WRITE -1 1000 EOF");
	char flocked[1024];
	fdinfo_locks(5, flocked, sizeof flocked);
	if (strncmp(flocked, "FLOCK WRITE ", 12) || strchr(flocked, '|'))
		fail("fd 5 shows locks \"%s\", not one FLOCK WRITE", flocked);
	const char *parents[] = {"WRITE 0 99", "READ 200 299"}, *childs[] = {"READ 200 299"};
	if (me == parent_pid)
		want_own_posix_locks(parents, 2);
	else
		want_own_posix_locks(childs, 1);
	if (me == parent_pid)
		ask_probe();
}

static int posix_lock(int fd, int cmd, int type, off_t start, off_t len)
{
	struct flock l = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
	return fcntl(fd, cmd, &l);
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	syscall(SYS_close_range, 3, ~0U, 0);
	result = argv[1];
	dir = argv[3];
	signal(SIGUSR1, on_usr1);
	int data = open(path("data"), O_RDWR | O_CREAT, 0644);
	int ofd = open(path("data"), O_RDWR);
	int pidf = open(path("pid"), O_RDWR | O_CREAT, 0644);
	if (data != 3 || ofd != 4 || pidf != 5)
		return 3;
	struct stat st;
	if (fstat(data, &st) || ftruncate(data, 4096))
		return 4;
	data_ino = st.st_ino;
	if (posix_lock(data, F_SETLK, F_WRLCK, 0, 100) || posix_lock(data, F_SETLK, F_RDLCK, 200, 100) ||
	    posix_lock(ofd, F_OFD_SETLK, F_WRLCK, 1000, 0) || flock(pidf, LOCK_EX | LOCK_NB))
		return 5;
	parent_pid = getpid();
	int told[2];
	char c;
	if (pipe(told))
		return 6;
	child_pid = fork();
	if (child_pid < 0)
		return 7;
	if (child_pid == 0) {
		if (posix_lock(data, F_SETLK, F_RDLCK, 200, 100) || write(told[1], "c", 1) != 1)
			_exit(8);
	} else if (read(told[0], &c, 1) != 1) {
		return 9;
	}
	close(told[0]);
	close(told[1]);
	quiet = 1; /* one READY line, naming both */
	if (child_pid) {
		printf("READY %d %d\n", parent_pid, child_pid);
		fflush(stdout);
	}
	serve(argv[2], check);
}
