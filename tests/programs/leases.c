/*
 * leases RESULT HEARTBEAT DIR [deleted]: a task holding file leases that a dump
 * and a restore with --file-locks must keep (tests/file_locks.rs).
 * Writes a heartbeat counter to HEARTBEAT every 2 ms and prints
 * "READY pid". On SIGUSR1 it checks its leases and appends "OK pid" or
 * "FAIL pid: why; why..." to RESULT.
 *
 *  fd 3  DIR/read, read-only: a read lease; its break signal is the
 *        default, SIGIO.
 *  fd 4  DIR/write, read-write: a write lease; F_SETSIG SIGRTMIN+2, so
 *        its break signal carries the fd (si_fd). With "deleted",
 *        DIR/write is unlinked once leased.
 *
 * The check: F_GETLEASE gives each lease's type, fdinfo shows each as
 * an ACTIVE lease of this process, F_GETOWN names this process and
 * F_GETSIG the signal set. Then each lease is broken for real: a child
 * opens DIR/write for reading (DIR/read for writing); the kernel sends
 * the break signal to this task, which takes it (the signals are
 * blocked from the start, so none can end the task), sees the lease
 * breaking (F_GETLEASE gives the type it breaks to), gives the lease up
 * with F_SETLEASE F_UNLCK, and the child's open then goes through.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "selfcheck.h"

static const char *dir;
static int sig_write; /* fd 4's break signal: SIGRTMIN+2 */

static char *path(const char *name)
{
	static char p[4096];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	return p;
}

/* The "lock:" line of /proc/self/fdinfo/FD as "CLASS MODE TYPE PID", or
 * "" when there is none (or more than one). */
static void fdinfo_lease(int fd, char *out, size_t len)
{
	char p[64], line[512], class[16], mode[16], ty[16];
	int pid, n = 0;
	snprintf(p, sizeof p, "/proc/self/fdinfo/%d", fd);
	out[0] = 0;
	FILE *f = fopen(p, "r");
	if (!f)
		return;
	while (fgets(line, sizeof line, f)) {
		if (strncmp(line, "lock:", 5))
			continue;
		if (n++ || sscanf(line + 5, "%*d: %15s %15s %15s %d", class, mode, ty, &pid) != 4) {
			out[0] = 0;
			break;
		}
		snprintf(out, len, "%s %s %s %d", class, mode, ty, pid);
	}
	fclose(f);
}

static void want_lease(int fd, int type, const char *ty)
{
	int got = fcntl(fd, F_GETLEASE);
	if (got < 0)
		fail("fd %d: F_GETLEASE: %s", fd, strerror(errno));
	else if (got != type)
		fail("fd %d: F_GETLEASE gives %d, not %d", fd, got, type);
	char want[64], shown[256];
	snprintf(want, sizeof want, "LEASE ACTIVE %s %d", ty, getpid());
	fdinfo_lease(fd, shown, sizeof shown);
	if (strcmp(shown, want))
		fail("fd %d shows \"%s\", not \"%s\"", fd, shown, want);
	if (fcntl(fd, F_GETOWN) != getpid())
		fail("fd %d: F_GETOWN gives %d, not %d", fd, fcntl(fd, F_GETOWN), getpid());
}

/* Breaks the lease on fd `fd` (file `name`) by a child that opens it
 * with `flags`: the task must get `sig` (with si_fd `fd` when `sig` is
 * not SIGIO), see the lease break to `to`, and let the child in by
 * giving the lease up. */
static void break_lease(int fd, const char *name, int flags, int sig, int to)
{
	pid_t c = fork();
	if (c < 0) {
		fail("fork: %s", strerror(errno));
		return;
	}
	if (c == 0) {
		int f = open(path(name), flags);
		_exit(f < 0 ? 1 : 0);
	}
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, sig);
	siginfo_t si;
	struct timespec ts = {.tv_sec = 10};
	int got = sigtimedwait(&set, &si, &ts);
	if (got != sig)
		fail("fd %d: no break signal %d within 10 s (%s)", fd, sig, strerror(errno));
	else if (sig != SIGIO && si.si_fd != fd)
		fail("fd %d: break signal %d names fd %d", fd, sig, si.si_fd);
	int now = fcntl(fd, F_GETLEASE);
	if (now != to)
		fail("fd %d: breaking, F_GETLEASE gives %d, not %d", fd, now, to);
	if (fcntl(fd, F_SETLEASE, F_UNLCK))
		fail("fd %d: F_SETLEASE F_UNLCK: %s", fd, strerror(errno));
	/* The child's open goes through once the lease is gone. */
	int st = -1;
	for (int i = 0; i < 1000; i++) {
		pid_t w = waitpid(c, &st, WNOHANG);
		if (w == c)
			break;
		st = -1;
		usleep(10000);
	}
	if (st == -1) {
		kill(c, SIGKILL);
		waitpid(c, NULL, 0);
		fail("fd %d: the opener of %s still waits after the lease was given up", fd, name);
	} else if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		fail("fd %d: the opener of %s failed (status %#x)", fd, name, st);
	}
}

static void check(void)
{
	want_lease(3, F_RDLCK, "READ");
	want_lease(4, F_WRLCK, "WRITE");
	int s = fcntl(4, F_GETSIG);
	if (s != sig_write)
		fail("fd 4: F_GETSIG gives %d, not %d", s, sig_write);
	if (why[0])
		return; /* no lease to break */
	/* A reader makes the write lease break to a read lease. */
	break_lease(4, "write", O_RDONLY, sig_write, F_RDLCK);
	/* A writer makes the read lease break to nothing. */
	break_lease(3, "read", O_WRONLY, SIGIO, F_UNLCK);
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	syscall(SYS_close_range, 3, ~0U, 0);
	result = argv[1];
	dir = argv[3];
	sig_write = SIGRTMIN + 2;
	signal(SIGUSR1, on_usr1);
	/* The break signals wait to be taken by sigtimedwait. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGIO);
	sigaddset(&set, sig_write);
	if (sigprocmask(SIG_BLOCK, &set, NULL))
		return 3;
	/* Not empty: a dump that read them through a new open (as for
	 * their build id) would break the write lease. */
	int made = open(path("read"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (made < 0 || write(made, "\177ELF data", 9) != 9 || close(made))
		return 4;
	int r = open(path("read"), O_RDONLY);
	int w = open(path("write"), O_RDWR | O_CREAT, 0644);
	if (r != 3 || w != 4 || ftruncate(w, 8192))
		return 4;
	if (fcntl(w, F_SETSIG, sig_write))
		return 5;
	if (fcntl(r, F_SETLEASE, F_RDLCK) || fcntl(w, F_SETLEASE, F_WRLCK))
		return 6;
	if (argc > 4 && !strcmp(argv[4], "deleted") && unlink(path("write")))
		return 7;
	serve(argv[2], check);
}
