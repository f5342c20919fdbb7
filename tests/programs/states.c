/*
 * states MODE RESULT HEARTBEAT: a task holding some task state that a
 * dump and a restore must keep (tests/dump_states.rs). Writes a
 * heartbeat counter to HEARTBEAT every 2 ms and prints "READY pid". On
 * SIGUSR1 (after a restore) it checks its own state and appends "OK pid"
 * or "FAIL pid: why; why..." to RESULT, as hostile.c does.
 *
 * Modes:
 *  signals      blocked and pending: SIGUSR2 and two SIGRTMIN+1 (values
 *               71, 72) for the process, SIGRTMIN+2 (value 73) for a
 *               second thread that blocks it; SIGPIPE ignored; SIGHUP
 *               handled with SA_RESTART | SA_ONSTACK | SA_NODEFER and
 *               SIGINT in its mask; both threads on an alternate stack
 *               of their own.
 *  itimers      ITIMER_REAL, ITIMER_VIRTUAL and ITIMER_PROF armed with
 *               their own values and intervals.
 *  prctl        thread names, no_new_privs, dumpable 0, THP disabled,
 *               a personality; a child with a parent death signal.
 *  limits       RLIMIT_NOFILE's soft limit lowered, RLIMIT_STACK and
 *               RLIMIT_CORE set, umask 027.
 *  cwd-deleted  the working directory removed after chdir (refused).
 *  fds          an O_PATH fd, close-on-exec on one fd and not another,
 *               O_APPEND and O_NONBLOCK, two fds (dup) sharing an
 *               offset, an eventfd (counter 5, EFD_SEMAPHORE), a
 *               signalfd and its mask, an armed timerfd, a pipe with
 *               data and 1 MiB of room.
 *  pipe-size    pipes made bigger (1 MiB) and smaller (4 KiB) than the
 *               default and a fifo of 256 KiB, each with data.
 *  chroot       chrooted into a directory, the cwd a directory in it.
 *  fown         a pipe with O_ASYNC, owned by the task, F_SETSIG
 *               SIGRTMIN+4: data written must signal it.
 *  timerfd-ticks
 *               a timerfd expired and not read (one tick), and one
 *               armed with an absolute CLOCK_REALTIME time.
 *  madvise      areas MADV_DONTDUMP, MADV_NOHUGEPAGE, MADV_RANDOM,
 *               MADV_SEQUENTIAL.
 *  memfd-map    a memfd sealed against writes and mapped shared,
 *               read-only.
 *  nofile-low   fd 500 open, then RLIMIT_NOFILE's soft limit set to 64.
 *  sched        SCHED_BATCH and nice 7, a thread SCHED_IDLE.
 *  sigflags     SA_SIGINFO | SA_RESETHAND on SIGTERM, SIGCHLD ignored
 *               with SA_NOCLDWAIT, an alternate stack SS_AUTODISARM.
 *  inotify      an inotify watching a directory for IN_CREATE.
 *  fanotify     a fanotify group (non-blocking) with a mark on a file
 *               (FAN_MODIFY), an ignored mask on another (FAN_OPEN,
 *               surviving modification) and a mark on the mount of both
 *               (FAN_OPEN), and on a fourth file FAN_CLOSE_WRITE and a
 *               FAN_MARK_IGNORE mark (FAN_OPEN): the check compares the group's fdinfo with
 *               the dump's, then sees the events a write and two opens
 *               make, and none for the ignored file.
 *  memfd        a memfd with data and F_SEAL_GROW | F_SEAL_SHRINK.
 *  pidfd        pidfds of a child that pauses (one PIDFD_NONBLOCK, one
 *               dup'ed without close-on-exec) and of the task itself.
 *  pidfd-exited two pidfds (one PIDFD_NONBLOCK) of a child reaped since,
 *               and one of another: they name no pid, the first two one
 *               process, the third another.
 *  memory       areas MADV_DONTFORK, MADV_WIPEONFORK, mlocked,
 *               MAP_GROWSDOWN, a PROT_NONE reservation, a file mapped
 *               past its end, and MAP_SHARED anonymous memory shared
 *               with a child.
 *  threads      a thread with its own mask, a robust list, rseq
 *               registered, and a thread that exits after the restore
 *               and is joined.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#ifndef FAN_MARK_IGNORE
#define FAN_MARK_IGNORE 0x00000400
#endif
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <sys/vfs.h>
#include <poll.h>
#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31)
#endif
#include <unistd.h>

#include "selfcheck.h"


static char *anon_rw(size_t len);
static const char *vmflags(void *a);

/* A child that pauses, dies with the task, and answers OK. */
static pid_t child(int pdeath)
{
	int told[2];
	char c;
	if (pipe(told))
		exit(2);
	pid_t p = fork();
	if (p == 0) {
		prctl(PR_SET_PDEATHSIG, pdeath);
		quiet = 1;
		if (write(told[1], "c", 1) != 1)
			_exit(2);
		close(told[0]);
		close(told[1]);
		return 0;
	}
	if (p < 0 || read(told[0], &c, 1) != 1)
		exit(2);
	close(told[0]);
	close(told[1]);
	return p;
}

/* ---- signals ---- */
static pthread_t sig_thread;
static volatile sig_atomic_t sig_thread_asked;
static char sig_thread_why[512];
static pid_t sig_thread_tid;

static void on_hup(int s) { (void)s; }

static void alt_stack(size_t size)
{
	stack_t ss = {.ss_sp = malloc(size), .ss_size = size};
	if (!ss.ss_sp || sigaltstack(&ss, NULL))
		exit(2);
}

static size_t main_ss_size;
static void *main_ss_sp, *thread_ss_sp;

static void *sig_thread_main(void *arg)
{
	(void)arg;
	sig_thread_tid = gettid();
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGRTMIN + 2);
	sigaddset(&s, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &s, NULL);
	alt_stack(3 * 8192);
	stack_t now;
	sigaltstack(NULL, &now);
	thread_ss_sp = now.ss_sp;
	for (;;) {
		usleep(1000);
		if (!sig_thread_asked)
			continue;
		const char *w = NULL;
		struct timespec zero = {0, 0};
		siginfo_t si;
		sigset_t r;
		sigemptyset(&r);
		sigaddset(&r, SIGRTMIN + 2);
		if (sigaltstack(NULL, &now) || now.ss_sp != thread_ss_sp || now.ss_size != 3 * 8192 ||
		    (now.ss_flags & SS_DISABLE))
			w = "the second thread's alternate stack";
		else if (sigtimedwait(&r, &si, &zero) != SIGRTMIN + 2 || si.si_value.sival_int != 73)
			w = "the second thread's SIGRTMIN+2 (value 73) lost";
		snprintf(sig_thread_why, sizeof sig_thread_why, "%s", w ? w : "");
		sig_thread_asked = 0;
	}
	return NULL;
}

static void signals(void)
{
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR2);
	sigaddset(&s, SIGRTMIN + 1);
	sigaddset(&s, SIGRTMIN + 2);
	sigprocmask(SIG_BLOCK, &s, NULL);
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = {.sa_handler = on_hup, .sa_flags = SA_RESTART | SA_ONSTACK | SA_NODEFER};
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGINT);
	sigaction(SIGHUP, &sa, NULL);
	alt_stack(2 * 8192);
	stack_t now;
	sigaltstack(NULL, &now);
	main_ss_sp = now.ss_sp;
	main_ss_size = now.ss_size;
	if (pthread_create(&sig_thread, NULL, sig_thread_main, NULL))
		exit(2);
	while (!sig_thread_tid)
		usleep(1000);
	usleep(10000);
	kill(getpid(), SIGUSR2);
	union sigval v = {.sival_int = 71};
	sigqueue(getpid(), SIGRTMIN + 1, v);
	v.sival_int = 72;
	sigqueue(getpid(), SIGRTMIN + 1, v);
	siginfo_t si = {.si_signo = SIGRTMIN + 2, .si_code = SI_QUEUE, .si_pid = getpid(),
			.si_uid = getuid(), .si_value.sival_int = 73};
	if (syscall(SYS_rt_tgsigqueueinfo, getpid(), sig_thread_tid, SIGRTMIN + 2, &si))
		exit(2);
}

/* SigPnd or ShdPnd of /proc/self/task/TID/status. */
static unsigned long long pending_of(pid_t tid, const char *key)
{
	char p[64], line[256];
	snprintf(p, sizeof p, "/proc/self/task/%d/status", tid);
	FILE *f = fopen(p, "r");
	unsigned long long v = ~0ULL;
	if (!f)
		return v;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, key, strlen(key)))
			v = strtoull(line + strlen(key), NULL, 16);
	fclose(f);
	return v;
}

static void signals_check(void)
{
	unsigned long long bit = 1;
	unsigned long long shd = bit << (SIGUSR2 - 1) | bit << (SIGRTMIN + 1 - 1);
	unsigned long long thr = bit << (SIGRTMIN + 2 - 1);
	if (pending_of(gettid(), "ShdPnd:") != shd)
		fail("process-wide pending %llx, not %llx", pending_of(gettid(), "ShdPnd:"), shd);
	if (pending_of(gettid(), "SigPnd:") != 0)
		fail("main thread pending %llx", pending_of(gettid(), "SigPnd:"));
	if (pending_of(sig_thread_tid, "SigPnd:") != thr)
		fail("second thread pending %llx, not %llx", pending_of(sig_thread_tid, "SigPnd:"), thr);
	/* Blocked masks. */
	sigset_t m;
	pthread_sigmask(SIG_BLOCK, NULL, &m);
	if (!sigismember(&m, SIGUSR2) || !sigismember(&m, SIGRTMIN + 1) || sigismember(&m, SIGUSR1))
		fail("main thread mask");
	char p[64], line[256];
	snprintf(p, sizeof p, "/proc/self/task/%d/status", sig_thread_tid);
	FILE *f = fopen(p, "r");
	unsigned long long blk = 0;
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, "SigBlk:", 7))
			blk = strtoull(line + 7, NULL, 16);
	if (f)
		fclose(f);
	unsigned long long want = bit << (SIGUSR2 - 1) | bit << (SIGRTMIN + 1 - 1) |
				  bit << (SIGRTMIN + 2 - 1) | bit << (SIGUSR1 - 1);
	if (blk != want)
		fail("second thread mask %llx, not %llx", blk, want);
	/* Actions. */
	struct sigaction sa;
	sigaction(SIGPIPE, NULL, &sa);
	if (sa.sa_handler != SIG_IGN)
		fail("SIGPIPE not ignored");
	sigaction(SIGHUP, NULL, &sa);
	if (sa.sa_handler != on_hup)
		fail("SIGHUP handler");
	int fl = SA_RESTART | SA_ONSTACK | SA_NODEFER;
	if ((sa.sa_flags & fl) != fl)
		fail("SIGHUP flags %x", sa.sa_flags);
	if (!sigismember(&sa.sa_mask, SIGINT) || sigismember(&sa.sa_mask, SIGTERM))
		fail("SIGHUP mask");
	/* Alternate stacks. */
	stack_t now;
	if (sigaltstack(NULL, &now) || now.ss_sp != main_ss_sp || now.ss_size != main_ss_size ||
	    (now.ss_flags & SS_DISABLE))
		fail("main thread's alternate stack");
	/* The values, in order, from the queues. */
	struct timespec zero = {0, 0};
	siginfo_t si;
	sigset_t w;
	sigemptyset(&w);
	sigaddset(&w, SIGRTMIN + 1);
	for (int want = 71; want <= 72; want++)
		if (sigtimedwait(&w, &si, &zero) != SIGRTMIN + 1 || si.si_value.sival_int != want ||
		    si.si_code != SI_QUEUE)
			fail("SIGRTMIN+1 value %d lost", want);
	if (sigtimedwait(&w, &si, &zero) >= 0)
		fail("a third SIGRTMIN+1");
	sigemptyset(&w);
	sigaddset(&w, SIGUSR2);
	if (sigtimedwait(&w, &si, &zero) != SIGUSR2 || si.si_code != SI_USER || si.si_pid != getpid())
		fail("SIGUSR2 lost or changed (code %d pid %d)", si.si_code, si.si_pid);
	/* The second thread's own signal and stack: it checks them itself. */
	sig_thread_asked = 1;
	for (int i = 0; i < 1000 && sig_thread_asked; i++)
		usleep(1000);
	if (sig_thread_asked)
		fail("the second thread did not answer");
	else if (sig_thread_why[0])
		fail("%s", sig_thread_why);
}

/* ---- itimers ---- */
static struct itimerval it_set[3] = {
	{.it_interval = {500, 0}, .it_value = {1000, 0}},
	{.it_interval = {600, 250000}, .it_value = {2000, 0}},
	{.it_interval = {700, 0}, .it_value = {3000, 500000}},
};

static void itimers(void)
{
	for (int i = 0; i < 3; i++)
		if (setitimer(i, &it_set[i], NULL))
			exit(2);
}

static void itimers_check(void)
{
	const char *name[] = {"REAL", "VIRTUAL", "PROF"};
	for (int i = 0; i < 3; i++) {
		struct itimerval g;
		getitimer(i, &g);
		if (g.it_interval.tv_sec != it_set[i].it_interval.tv_sec ||
		    g.it_interval.tv_usec != it_set[i].it_interval.tv_usec)
			fail("ITIMER_%s interval %ld.%06ld", name[i], g.it_interval.tv_sec,
			     g.it_interval.tv_usec);
		if (g.it_value.tv_sec <= 0 || g.it_value.tv_sec > it_set[i].it_value.tv_sec)
			fail("ITIMER_%s value %ld.%06ld", name[i], g.it_value.tv_sec,
			     g.it_value.tv_usec);
	}
}

/* ---- prctl ---- */
static pthread_t named;
static int pers = PER_LINUX | UNAME26 | ADDR_NO_RANDOMIZE;
static pid_t pd_child;

static void *named_main(void *arg)
{
	(void)arg;
	prctl(PR_SET_NAME, "states-worker");
	for (;;)
		pause();
	return NULL;
}

static void prctls(void)
{
	prctl(PR_SET_NAME, "states-main");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
	    prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) || personality(pers) < 0)
		exit(2);
	pd_child = child(SIGUSR2);
	if (!pd_child)
		return;
	if (pthread_create(&named, NULL, named_main, NULL))
		exit(2);
	if (prctl(PR_SET_DUMPABLE, 0))
		exit(2);
	usleep(10000);
}

static void prctls_check(void)
{
	char n[32] = "";
	if (!pd_child) {
		int s = 0;
		prctl(PR_GET_PDEATHSIG, &s);
		if (s != SIGUSR2)
			fail("parent death signal %d", s);
		return;
	}
	prctl(PR_GET_NAME, n);
	if (strcmp(n, "states-main"))
		fail("main thread name %s", n);
	pthread_getname_np(named, n, sizeof n);
	if (strcmp(n, "states-worker"))
		fail("thread name %s", n);
	if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
		fail("no_new_privs lost");
	if (prctl(PR_GET_DUMPABLE) != 0)
		fail("dumpable %d", prctl(PR_GET_DUMPABLE));
	if (prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) != 1)
		fail("THP no longer disabled");
	if (personality(0xffffffff) != pers)
		fail("personality %x", personality(0xffffffff));
}

/* ---- limits ---- */
static struct rlimit nofile0, stack0, core0;

static void limits(void)
{
	getrlimit(RLIMIT_NOFILE, &nofile0);
	nofile0.rlim_cur = 123;
	stack0 = (struct rlimit){.rlim_cur = 3 << 20, .rlim_max = 64 << 20};
	core0 = (struct rlimit){.rlim_cur = 0, .rlim_max = 5 << 20};
	if (setrlimit(RLIMIT_NOFILE, &nofile0) || setrlimit(RLIMIT_STACK, &stack0) ||
	    setrlimit(RLIMIT_CORE, &core0))
		exit(2);
	umask(027);
}

static void limits_check(void)
{
	struct rlimit r;
	getrlimit(RLIMIT_NOFILE, &r);
	if (r.rlim_cur != nofile0.rlim_cur || r.rlim_max != nofile0.rlim_max)
		fail("RLIMIT_NOFILE %lu/%lu", r.rlim_cur, r.rlim_max);
	getrlimit(RLIMIT_STACK, &r);
	if (r.rlim_cur != stack0.rlim_cur || r.rlim_max != stack0.rlim_max)
		fail("RLIMIT_STACK %lu/%lu", r.rlim_cur, r.rlim_max);
	getrlimit(RLIMIT_CORE, &r);
	if (r.rlim_cur != core0.rlim_cur || r.rlim_max != core0.rlim_max)
		fail("RLIMIT_CORE %lu/%lu", r.rlim_cur, r.rlim_max);
	mode_t m = umask(0);
	umask(m);
	if (m != 027)
		fail("umask %o", m);
}

/* ---- cwd-deleted ---- */
static void cwd_deleted(void)
{
	char d[4200];
	snprintf(d, sizeof d, "%s.dir", result);
	if (mkdir(d, 0700) || chdir(d) || open("f", O_CREAT | O_RDWR, 0600) != 3 ||
	    unlink("f") || rmdir(d))
		exit(2);
	close(3);
}

static void cwd_deleted_check(void)
{
	struct stat st;
	char b[4200];
	if (stat(".", &st))
		fail("stat .");
	else if (st.st_nlink != 0)
		fail("the working directory is not deleted (%ld links)", (long)st.st_nlink);
	if (getcwd(b, sizeof b) || errno != ENOENT)
		fail("getcwd says %s", b);
	if (open("x", O_CREAT | O_RDWR, 0600) >= 0 || errno != ENOENT)
		fail("a file could be made in the deleted directory");
}

/* ---- fds ---- */
static int pfd, cx, ncx, app, nb, d1, d2, efd, sfd, tfd, pr, pw;

static int tmpfile_at(const char *suffix, int flags)
{
	char p[4200];
	snprintf(p, sizeof p, "%s.%s", result, suffix);
	return open(p, flags | O_CREAT, 0600);
}

static void fds(void)
{
	char p[4200];
	snprintf(p, sizeof p, "%s.opath", result);
	close(tmpfile_at("opath", O_RDWR));
	pfd = open(p, O_PATH);
	cx = tmpfile_at("cx", O_RDWR | O_CLOEXEC);
	ncx = tmpfile_at("cx", O_RDWR);
	app = tmpfile_at("app", O_WRONLY | O_APPEND);
	if (write(app, "0123456789", 10) != 10)
		exit(2);
	int sp[2];
	if (pipe(sp))
		exit(2);
	nb = sp[0];
	fcntl(nb, F_SETFL, O_NONBLOCK);
	d1 = tmpfile_at("dup", O_RDWR);
	if (write(d1, "abcdefgh", 8) != 8 || lseek(d1, 3, SEEK_SET) != 3)
		exit(2);
	d2 = dup(d1);
	efd = eventfd(5, EFD_SEMAPHORE | EFD_NONBLOCK);
	sigset_t m;
	sigemptyset(&m);
	sigaddset(&m, SIGUSR2);
	sigaddset(&m, SIGRTMIN + 3);
	sfd = signalfd(-1, &m, SFD_NONBLOCK);
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	struct itimerspec its = {.it_value = {1000, 0}, .it_interval = {10, 500}};
	int q[2];
	if (pfd < 0 || cx < 0 || ncx < 0 || app < 0 || d1 < 0 || d2 < 0 || efd < 0 || sfd < 0 ||
	    tfd < 0 || timerfd_settime(tfd, 0, &its, NULL) || pipe(q) ||
	    fcntl(q[1], F_SETPIPE_SZ, 1 << 20) < 0 || write(q[1], "piped", 5) != 5)
		exit(2);
	pr = q[0];
	pw = q[1];
}

static void fds_check(void)
{
	char p[4200], l[4200];
	snprintf(p, sizeof p, "/proc/self/fd/%d", pfd);
	ssize_t n = readlink(p, l, sizeof l - 1);
	l[n > 0 ? n : 0] = 0;
	snprintf(p, sizeof p, "%s.opath", result);
	if (strcmp(l, p))
		fail("O_PATH fd names %s", l);
	if (!(fcntl(pfd, F_GETFL) & O_PATH))
		fail("O_PATH lost (flags %o)", fcntl(pfd, F_GETFL));
	if (fcntl(cx, F_GETFD) != FD_CLOEXEC || fcntl(ncx, F_GETFD) != 0)
		fail("close-on-exec flags");
	if (!(fcntl(app, F_GETFL) & O_APPEND))
		fail("O_APPEND lost");
	if (!(fcntl(nb, F_GETFL) & O_NONBLOCK))
		fail("O_NONBLOCK lost");
	if (lseek(d1, 0, SEEK_CUR) != 3 || lseek(d1, 5, SEEK_SET) != 5 ||
	    lseek(d2, 0, SEEK_CUR) != 5)
		fail("the dup'ed fds do not share an offset");
	uint64_t v = 0;
	if (read(efd, &v, 8) != 8 || v != 1)
		fail("eventfd not a semaphore (read %lu)", (unsigned long)v);
	int k = 1;
	while (read(efd, &v, 8) == 8)
		k++;
	if (k != 5)
		fail("eventfd counter %d, not 5", k);
	/* The mask, from fdinfo. */
	snprintf(p, sizeof p, "/proc/self/fdinfo/%d", sfd);
	FILE *f = fopen(p, "r");
	unsigned long long mask = 0;
	while (f && fgets(l, sizeof l, f))
		if (!strncmp(l, "sigmask:", 8))
			mask = strtoull(l + 8, NULL, 16);
	if (f)
		fclose(f);
	unsigned long long want = 1ULL << (SIGUSR2 - 1) | 1ULL << (SIGRTMIN + 3 - 1);
	if (mask != want)
		fail("signalfd mask %llx, not %llx", mask, want);
	struct itimerspec its;
	if (timerfd_gettime(tfd, &its) || its.it_interval.tv_sec != 10 ||
	    its.it_interval.tv_nsec != 500 || its.it_value.tv_sec <= 0 || its.it_value.tv_sec > 1000)
		fail("timerfd %ld.%09ld / %ld.%09ld", its.it_value.tv_sec, its.it_value.tv_nsec,
		     its.it_interval.tv_sec, its.it_interval.tv_nsec);
	if (fcntl(pw, F_GETPIPE_SZ) != 1 << 20)
		fail("pipe size %d", fcntl(pw, F_GETPIPE_SZ));
	char b[16] = "";
	if (read(pr, b, sizeof b) != 5 || memcmp(b, "piped", 5))
		fail("pipe data lost");
}

/* ---- pipe-size ---- */
static int big[2], small[2], fifo;

static void pipe_size(void)
{
	char p[4200];
	snprintf(p, sizeof p, "%s.fifo", result);
	if (pipe(big) || pipe(small) || mkfifo(p, 0600) || (fifo = open(p, O_RDWR)) < 0 ||
	    fcntl(big[1], F_SETPIPE_SZ, 1 << 20) < 0 || fcntl(small[1], F_SETPIPE_SZ, 4096) < 0 ||
	    fcntl(fifo, F_SETPIPE_SZ, 256 << 10) < 0 || write(big[1], "big", 3) != 3 ||
	    write(small[1], "small", 5) != 5 || write(fifo, "fifo", 4) != 4)
		exit(2);
}

static void pipe_size_check(void)
{
	if (fcntl(big[1], F_GETPIPE_SZ) != 1 << 20)
		fail("the big pipe holds %d bytes", fcntl(big[1], F_GETPIPE_SZ));
	if (fcntl(small[0], F_GETPIPE_SZ) != 4096)
		fail("the small pipe holds %d bytes", fcntl(small[0], F_GETPIPE_SZ));
	if (fcntl(fifo, F_GETPIPE_SZ) != 256 << 10)
		fail("the fifo holds %d bytes", fcntl(fifo, F_GETPIPE_SZ));
	char b[16] = "";
	if (read(big[0], b, 3) != 3 || read(small[0], b + 3, 5) != 5 || read(fifo, b + 8, 4) != 4 ||
	    memcmp(b, "bigsmallfifo", 12))
		fail("data lost");
}

/* ---- chroot ---- */
static char root_dir[4200];

static void chroot_mode(void)
{
	snprintf(root_dir, sizeof root_dir, "%s.root", result);
	char p[4300];
	snprintf(p, sizeof p, "%s/inside", root_dir);
	/* The result file is reached through a descriptor opened before. */
	result_fd = open(result, O_WRONLY | O_APPEND | O_CREAT, 0600);
	if (result_fd < 0 || mkdir(root_dir, 0700) || mkdir(p, 0700) || chroot(root_dir) || chdir("/inside"))
		exit(2);
}

static void chroot_check(void)
{
	struct stat a, b;
	char c[256];
	if (stat("/inside", &a) || stat(".", &b) || a.st_ino != b.st_ino)
		fail("not in /inside of the root");
	if (!getcwd(c, sizeof c) || strcmp(c, "/inside"))
		fail("cwd %s", c);
	if (stat("/proc", &a) == 0 || stat("/usr", &a) == 0)
		fail("the root is the machine's");
}

/* ---- fown ---- */
static int own[2];

static void fown(void)
{
	if (pipe(own) || fcntl(own[0], F_SETOWN, getpid()) ||
	    fcntl(own[0], F_SETSIG, SIGRTMIN + 4) ||
	    fcntl(own[0], F_SETFL, O_ASYNC | O_NONBLOCK))
		exit(2);
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGRTMIN + 4);
	sigprocmask(SIG_BLOCK, &s, NULL);
}

static void fown_check(void)
{
	if (fcntl(own[0], F_GETOWN) != getpid())
		fail("owner %d", fcntl(own[0], F_GETOWN));
	if (fcntl(own[0], F_GETSIG) != SIGRTMIN + 4)
		fail("signal %d", fcntl(own[0], F_GETSIG));
	if (!(fcntl(own[0], F_GETFL) & O_ASYNC))
		fail("O_ASYNC lost");
	if (write(own[1], "x", 1) != 1)
		fail("write");
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGRTMIN + 4);
	struct timespec t = {5, 0};
	siginfo_t si;
	if (sigtimedwait(&s, &si, &t) != SIGRTMIN + 4 || si.si_fd != own[0])
		fail("no SIGRTMIN+4 for fd %d", own[0]);
}

/* ---- timerfd-ticks ---- */
static int tk, tk_abs;

static void timerfd_ticks(void)
{
	tk = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	tk_abs = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK);
	struct itimerspec once = {.it_value = {0, 1}};
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	struct itimerspec abs = {.it_value = {now.tv_sec + 100000, 0}};
	if (tk < 0 || tk_abs < 0 || timerfd_settime(tk, 0, &once, NULL) ||
	    timerfd_settime(tk_abs, TFD_TIMER_ABSTIME, &abs, NULL))
		exit(2);
	usleep(10000);
}

static void timerfd_ticks_check(void)
{
	uint64_t n = 0;
	if (read(tk, &n, 8) != 8 || n != 1)
		fail("expired timer: %lu ticks, not 1", (unsigned long)n);
	struct itimerspec its;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	if (timerfd_gettime(tk_abs, &its) || its.it_value.tv_sec > 100000 ||
	    its.it_value.tv_sec < 100000 - 1000)
		fail("the absolute timer is due in %ld s", its.it_value.tv_sec);
}

/* ---- madvise ---- */
static char *dd, *nh, *rr, *sq;

static void madv(void)
{
	dd = anon_rw(4096);
	nh = anon_rw(2 << 20);
	rr = anon_rw(4096 * 3);
	sq = anon_rw(4096 * 5);
	if (madvise(dd, 4096, MADV_DONTDUMP) || madvise(nh, 2 << 20, MADV_NOHUGEPAGE) ||
	    madvise(rr, 4096 * 3, MADV_RANDOM) || madvise(sq, 4096 * 5, MADV_SEQUENTIAL))
		exit(2);
	strcpy(dd, "dd");
}

static void madv_check(void)
{
	if (!strstr(vmflags(dd), " dd"))
		fail("MADV_DONTDUMP lost: %s", vmflags(dd));
	if (!strstr(vmflags(nh), " nh"))
		fail("MADV_NOHUGEPAGE lost: %s", vmflags(nh));
	if (!strstr(vmflags(rr), " rr"))
		fail("MADV_RANDOM lost: %s", vmflags(rr));
	if (!strstr(vmflags(sq), " sr"))
		fail("MADV_SEQUENTIAL lost: %s", vmflags(sq));
	if (strcmp(dd, "dd"))
		fail("data lost");
}

/* ---- memfd-map ---- */
static int mfd2;
static char *mfd2_map;

static void memfd_map(void)
{
	mfd2 = memfd_create("states-map", MFD_ALLOW_SEALING | MFD_CLOEXEC);
	if (mfd2 < 0 || ftruncate(mfd2, 8192))
		exit(2);
	if (pwrite(mfd2, "mapped", 6, 4096) != 6 ||
	    fcntl(mfd2, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SEAL | F_SEAL_SHRINK))
		exit(2);
	/* Read-only and shared: allowed once sealed against writes. */
	mfd2_map = mmap(NULL, 8192, PROT_READ, MAP_SHARED, mfd2, 0);
	if (mfd2_map == MAP_FAILED)
		exit(2);
}

static void memfd_map_check(void)
{
	if (memcmp(mfd2_map + 4096, "mapped", 6))
		fail("mapped data lost");
	int s = fcntl(mfd2, F_GET_SEALS);
	if (s != (F_SEAL_WRITE | F_SEAL_SEAL | F_SEAL_SHRINK))
		fail("seals %x", s);
	if (fcntl(mfd2, F_GETFD) != FD_CLOEXEC)
		fail("close-on-exec lost");
	if (pwrite(mfd2, "x", 1, 0) == 1)
		fail("written through F_SEAL_WRITE");
}

/* ---- nofile-low: fds above a soft limit lowered after they opened ---- */
static void nofile_low(void)
{
	struct rlimit r;
	if (dup2(0, 500) != 500 || getrlimit(RLIMIT_NOFILE, &r))
		exit(2);
	r.rlim_cur = 64;
	if (setrlimit(RLIMIT_NOFILE, &r))
		exit(2);
}

static void nofile_low_check(void)
{
	struct rlimit r;
	getrlimit(RLIMIT_NOFILE, &r);
	if (r.rlim_cur != 64)
		fail("RLIMIT_NOFILE %lu", r.rlim_cur);
	if (fcntl(500, F_GETFD) < 0)
		fail("fd 500 lost");
}

/* ---- sched ---- */
static pthread_t idle;
static pid_t idle_tid;

static void *idle_main(void *arg)
{
	(void)arg;
	struct sched_param sp = {0};
	sched_setscheduler(0, SCHED_IDLE, &sp);
	idle_tid = gettid();
	for (;;)
		pause();
	return NULL;
}

static void sched(void)
{
	struct sched_param sp = {0};
	if (sched_setscheduler(0, SCHED_BATCH, &sp) || setpriority(PRIO_PROCESS, 0, 7) ||
	    pthread_create(&idle, NULL, idle_main, NULL))
		exit(2);
	while (!idle_tid)
		usleep(1000);
}

static void sched_check(void)
{
	if (sched_getscheduler(0) != SCHED_BATCH)
		fail("main thread's policy %d", sched_getscheduler(0));
	errno = 0;
	if (getpriority(PRIO_PROCESS, 0) != 7)
		fail("nice %d", getpriority(PRIO_PROCESS, 0));
	if (sched_getscheduler(idle_tid) != SCHED_IDLE)
		fail("second thread's policy %d", sched_getscheduler(idle_tid));
}

/* ---- sigflags ---- */
static void on_info(int s, siginfo_t *si, void *c) { (void)s; (void)si; (void)c; }

static void sigflags(void)
{
	struct sigaction sa = {.sa_sigaction = on_info, .sa_flags = SA_SIGINFO | SA_RESETHAND};
	sigemptyset(&sa.sa_mask);
	struct sigaction ch = {.sa_handler = SIG_IGN, .sa_flags = SA_NOCLDWAIT | SA_NOCLDSTOP};
	sigemptyset(&ch.sa_mask);
	stack_t ss = {.ss_sp = malloc(65536), .ss_size = 65536, .ss_flags = SS_AUTODISARM};
	if (sigaction(SIGTERM, &sa, NULL) || sigaction(SIGCHLD, &ch, NULL) || sigaltstack(&ss, NULL))
		exit(2);
}

static void sigflags_check(void)
{
	struct sigaction sa;
	sigaction(SIGTERM, NULL, &sa);
	if (sa.sa_sigaction != on_info || (sa.sa_flags & (SA_SIGINFO | SA_RESETHAND)) !=
						  (SA_SIGINFO | SA_RESETHAND))
		fail("SIGTERM action (flags %x)", sa.sa_flags);
	sigaction(SIGCHLD, NULL, &sa);
	if (sa.sa_handler != SIG_IGN || (sa.sa_flags & (SA_NOCLDWAIT | SA_NOCLDSTOP)) !=
						(SA_NOCLDWAIT | SA_NOCLDSTOP))
		fail("SIGCHLD action (flags %x)", sa.sa_flags);
	stack_t now;
	if (sigaltstack(NULL, &now) || now.ss_size != 65536 || !(now.ss_flags & SS_AUTODISARM))
		fail("alternate stack (flags %x)", now.ss_flags);
	/* SIGCHLD ignored: a child is reaped by the kernel. */
	pid_t c = fork();
	if (c == 0)
		_exit(0);
	if (waitpid(c, NULL, 0) != -1 || errno != ECHILD)
		fail("a child was left to reap");
}

/* ---- inotify ---- */
static int ino;
static char ino_dir[4200];

static void inotify(void)
{
	snprintf(ino_dir, sizeof ino_dir, "%s.watched", result);
	if (mkdir(ino_dir, 0700))
		exit(2);
	ino = inotify_init1(IN_NONBLOCK);
	if (ino < 0 || inotify_add_watch(ino, ino_dir, IN_CREATE) < 0)
		exit(2);
}

static void inotify_check(void)
{
	char p[4300], b[4096];
	if (read(ino, b, sizeof b) >= 0)
		fail("an event before any file was made");
	snprintf(p, sizeof p, "%s/new", ino_dir);
	int fd = open(p, O_CREAT | O_RDWR, 0600);
	close(fd);
	ssize_t n = read(ino, b, sizeof b);
	struct inotify_event *e = (void *)b;
	if (n < (ssize_t)sizeof *e || !(e->mask & IN_CREATE) || strcmp(e->name, "new"))
		fail("no IN_CREATE event for the new file");
}

/* ---- fanotify ---- */
static int fan;
static char fan_dir[4200], fan_info[4096];

/* The group's fdinfo lines ("fanotify ..."), sorted: the marks may list
 * in another order once added again. */
static void fan_fdinfo(char *out, size_t n)
{
	char path[64], lines[32][512];
	int k = 0;
	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fan);
	FILE *f = fopen(path, "r");
	while (f && k < 32 && fgets(lines[k], sizeof lines[k], f))
		if (!strncmp(lines[k], "fanotify ", 9))
			k++;
	if (f)
		fclose(f);
	qsort(lines, k, sizeof lines[0], (int (*)(const void *, const void *))strcmp);
	out[0] = 0;
	for (int i = 0; i < k; i++)
		strncat(out, lines[i], n - strlen(out) - 1);
}

static void fan_path(char *p, size_t n, const char *name)
{
	snprintf(p, n, "%s/%s", fan_dir, name);
}

static void fanotify(void)
{
	char p[4300];
	snprintf(fan_dir, sizeof fan_dir, "%s.fan", result);
	if (mkdir(fan_dir, 0700))
		exit(2);
	for (const char *const *n = (const char *const[]){"watched", "ignored", "third", "ignore2", NULL}; *n;
	     n++) {
		fan_path(p, sizeof p, *n);
		close(open(p, O_CREAT | O_RDWR, 0600));
	}
	fan = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK, O_RDONLY | O_LARGEFILE);
	fan_path(p, sizeof p, "watched");
	if (fan < 0 || fanotify_mark(fan, FAN_MARK_ADD, FAN_MODIFY, AT_FDCWD, p))
		exit(2);
	fan_path(p, sizeof p, "ignored");
	if (fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY,
			  FAN_OPEN, AT_FDCWD, p) ||
	    fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_OPEN, AT_FDCWD, fan_dir))
		exit(2);
	/* The newer way (Linux 6.0): FAN_MARK_IGNORE, which fdinfo shows in
	 * the mark's flags. */
	fan_path(p, sizeof p, "ignore2");
	if (fanotify_mark(fan, FAN_MARK_ADD, FAN_CLOSE_WRITE, AT_FDCWD, p) ||
	    fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_IGNORE | FAN_MARK_IGNORED_SURV_MODIFY, FAN_OPEN,
			  AT_FDCWD, p))
		exit(2);
	fan_fdinfo(fan_info, sizeof fan_info);
}

/* Reads the group's events (anyone's on the mount) until the third
 * file's FAN_OPEN, which comes last, or for two seconds; ORs the masks
 * seen on each of fan_dir's files into seen[]. */
static const char *fan_names[4] = {"watched", "ignored", "third", "ignore2"};

static void fan_events(unsigned long long seen[4])
{
	char b[8192], link[64], got[4300], want[4300];
	for (int tries = 0; tries < 200 && !(seen[2] & FAN_OPEN); tries++) {
		ssize_t n = read(fan, b, sizeof b);
		if (n <= 0) {
			usleep(10000);
			continue;
		}
		for (struct fanotify_event_metadata *m = (void *)b; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
			if (m->fd < 0)
				continue;
			snprintf(link, sizeof link, "/proc/self/fd/%d", m->fd);
			ssize_t l = readlink(link, got, sizeof got - 1);
			got[l > 0 ? l : 0] = 0;
			for (int k = 0; k < 4; k++) {
				fan_path(want, sizeof want, fan_names[k]);
				if (!strcmp(got, want))
					seen[k] |= m->mask;
			}
			close(m->fd);
		}
	}
}

static void fanotify_check(void)
{
	char now[4096], p[4300];
	fan_fdinfo(now, sizeof now);
	if (strcmp(now, fan_info))
		fail("fdinfo was [%s], is [%s]", fan_info, now);
	if (!(fcntl(fan, F_GETFL) & O_NONBLOCK))
		fail("the group is blocking");
	/* What the dump and restore did on the mount is queued: drop it. */
	char b[8192];
	ssize_t n;
	while ((n = read(fan, b, sizeof b)) > 0)
		for (struct fanotify_event_metadata *m = (void *)b; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n))
			if (m->fd >= 0)
				close(m->fd);
	fan_path(p, sizeof p, "watched");
	int fd = open(p, O_WRONLY);
	if (fd < 0 || write(fd, "x", 1) != 1)
		fail("writing the watched file");
	close(fd);
	fan_path(p, sizeof p, "ignored");
	close(open(p, O_RDONLY));
	fan_path(p, sizeof p, "ignore2");
	close(open(p, O_WRONLY));
	fan_path(p, sizeof p, "third");
	close(open(p, O_RDONLY));
	unsigned long long seen[4] = {0, 0, 0, 0};
	fan_events(seen);
	if (!(seen[0] & FAN_MODIFY))
		fail("no FAN_MODIFY on the watched file (mark on the inode)");
	if (seen[1] & FAN_OPEN)
		fail("FAN_OPEN on the file whose ignored mask holds it");
	if (seen[3] & FAN_OPEN)
		fail("FAN_OPEN on the file marked with FAN_MARK_IGNORE");
	if (!(seen[3] & FAN_CLOSE_WRITE))
		fail("no FAN_CLOSE_WRITE on the file marked with FAN_MARK_IGNORE too");
	if (!(seen[2] & FAN_OPEN))
		fail("no FAN_OPEN on the third file (mark on the mount)");
}

/* ---- memfd ---- */
static int mfd;

static void memfd(void)
{
	mfd = memfd_create("states", MFD_ALLOW_SEALING);
	if (mfd < 0 || write(mfd, "sealed data", 11) != 11 ||
	    fcntl(mfd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK))
		exit(2);
}

static void memfd_check(void)
{
	char b[16] = "";
	if (pread(mfd, b, sizeof b, 0) != 11 || memcmp(b, "sealed data", 11))
		fail("memfd data lost");
	int s = fcntl(mfd, F_GET_SEALS);
	if (s != (F_SEAL_GROW | F_SEAL_SHRINK))
		fail("seals %x", s);
}

/* ---- pidfd ---- */
static int pidfd, pidfd_dup, pidfd_nb, pidfd_self;
static pid_t pidfd_child;

static void pidfd_mode(void)
{
	pidfd_child = child(SIGKILL);
	if (!pidfd_child)
		return;
	pidfd = syscall(SYS_pidfd_open, pidfd_child, 0);
	pidfd_nb = syscall(SYS_pidfd_open, pidfd_child, O_NONBLOCK);
	pidfd_self = syscall(SYS_pidfd_open, getpid(), 0);
	/* Without close-on-exec, on the same file as pidfd. */
	pidfd_dup = fcntl(pidfd, F_DUPFD, 20);
	if (pidfd < 0 || pidfd_nb < 0 || pidfd_self < 0 || pidfd_dup < 0)
		exit(2);
}

/* The pid a pidfd names, from its fdinfo. */
static int pid_of(int fd)
{
	char p[64], l[256];
	snprintf(p, sizeof p, "/proc/self/fdinfo/%d", fd);
	FILE *f = fopen(p, "r");
	int pid = -1;
	while (f && fgets(l, sizeof l, f))
		if (!strncmp(l, "Pid:", 4))
			pid = atoi(l + 4);
	if (f)
		fclose(f);
	return pid;
}

static void pidfd_check(void)
{
	if (!pidfd_child)
		return;
	if (pid_of(pidfd) != pidfd_child || pid_of(pidfd_dup) != pidfd_child ||
	    pid_of(pidfd_nb) != pidfd_child)
		fail("a pidfd does not name the child");
	if (pid_of(pidfd_self) != getpid())
		fail("the pidfd of the task does not name it");
	if (fcntl(pidfd, F_GETFD) != FD_CLOEXEC || fcntl(pidfd_dup, F_GETFD) != 0)
		fail("close-on-exec flags");
	if (!(fcntl(pidfd_nb, F_GETFL) & O_NONBLOCK) || (fcntl(pidfd, F_GETFL) & O_NONBLOCK))
		fail("PIDFD_NONBLOCK");
	if (syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0))
		fail("pidfd_send_signal: %s", strerror(errno));
	siginfo_t si;
	si.si_pid = 0;
	if (waitid(P_PIDFD, pidfd_nb, &si, WEXITED | WNOHANG) || si.si_pid != 0)
		fail("waitid on the pidfd");
}

/* ---- pidfd-exited: pidfds of children reaped since ---- */
static int gone, gone_nb, gone_other;

/* A child that exits at once: returns its pidfd and, if `nb`, puts a
 * second one, PIDFD_NONBLOCK, there; reaped before it returns. */
static int reaped_child(int *nb)
{
	pid_t c = fork();
	if (c == 0)
		_exit(0);
	int fd = syscall(SYS_pidfd_open, c, 0);
	if (nb)
		*nb = syscall(SYS_pidfd_open, c, O_NONBLOCK);
	if (c < 0 || fd < 0 || (nb && *nb < 0) || waitpid(c, NULL, 0) != c)
		exit(2);
	return fd;
}

static void pidfd_exited(void)
{
	gone = reaped_child(&gone_nb);
	gone_other = reaped_child(NULL);
}

static void pidfd_exited_check(void)
{
	struct stat a, b, o;
	if (pid_of(gone) != -1 || pid_of(gone_nb) != -1 || pid_of(gone_other) != -1)
		fail("a pidfd of an exited process names a pid");
	if (fstat(gone, &a) || fstat(gone_nb, &b) || fstat(gone_other, &o)) {
		fail("fstat: %s", strerror(errno));
		return;
	}
	if (a.st_ino != b.st_ino)
		fail("two pidfds of one process name two");
	/* pidfs (Linux 6.9) gives each process its own inode; before, every
	 * pidfd had the one anonymous inode. */
	struct statfs fs;
	if (!fstatfs(gone, &fs) && fs.f_type == 0x50494446 && a.st_ino == o.st_ino)
		fail("pidfds of two processes name one");
	if (!(fcntl(gone_nb, F_GETFL) & O_NONBLOCK) || (fcntl(gone, F_GETFL) & O_NONBLOCK))
		fail("PIDFD_NONBLOCK");
	errno = 0;
	if (syscall(SYS_pidfd_send_signal, gone, 0, NULL, 0) != -1 || errno != ESRCH)
		fail("pidfd_send_signal to an exited process: %s", strerror(errno));
	struct pollfd p = {.fd = gone, .events = POLLIN};
	if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN))
		fail("the pidfd of an exited process does not poll readable");
}

/* ---- memory ---- */
static char *dontfork, *wipe, *locked, *grows, *resv, *pastend, *shared;
static pid_t mem_child;

/* The VmFlags of the mapping at `a`. */
static const char *vmflags(void *a)
{
	static char flags[512];
	char l[512];
	FILE *f = fopen("/proc/self/smaps", "r");
	int in = 0;
	flags[0] = 0;
	while (f && fgets(l, sizeof l, f)) {
		unsigned long s, e;
		if (sscanf(l, "%lx-%lx ", &s, &e) == 2 && strchr(l, '-') < strchr(l, ' '))
			in = (unsigned long)a >= s && (unsigned long)a < e;
		else if (in && !strncmp(l, "VmFlags:", 8))
			snprintf(flags, sizeof flags, "%s", l + 8);
	}
	if (f)
		fclose(f);
	return flags;
}

static char *anon(size_t len, int prot, int extra)
{
	char *p = mmap(NULL, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | extra, -1, 0);
	if (p == MAP_FAILED)
		exit(2);
	return p;
}

static char *anon_rw(size_t len) { return anon(len, PROT_READ | PROT_WRITE, 0); }

static void memory(void)
{
	dontfork = anon(4096, PROT_READ | PROT_WRITE, 0);
	wipe = anon(8192, PROT_READ | PROT_WRITE, 0);
	locked = anon(4096, PROT_READ | PROT_WRITE, 0);
	grows = anon(4 * 4096, PROT_READ | PROT_WRITE, MAP_GROWSDOWN);
	resv = anon(64 << 20, PROT_NONE, MAP_NORESERVE);
	strcpy(dontfork, "dontfork");
	strcpy(wipe, "wipe");
	strcpy(locked, "locked");
	strcpy(grows + 3 * 4096, "grows");
	if (madvise(dontfork, 4096, MADV_DONTFORK) || madvise(wipe, 8192, MADV_WIPEONFORK) ||
	    mlock(locked, 4096))
		exit(2);
	int fd = tmpfile_at("short", O_RDWR);
	if (fd < 0 || write(fd, "short", 5) != 5)
		exit(2);
	pastend = mmap(NULL, 3 * 4096, PROT_READ, MAP_SHARED, fd, 0);
	shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (pastend == MAP_FAILED || shared == MAP_FAILED)
		exit(2);
	close(fd);
	strcpy(shared, "before");
	mem_child = child(SIGKILL);
}

static void memory_check(void)
{
	if (!mem_child) {
		/* The child writes, its parent reads. */
		strcpy(shared, "from the child");
		return;
	}
	if (strcmp(dontfork, "dontfork") || strcmp(wipe, "wipe") || strcmp(locked, "locked") ||
	    strcmp(grows + 3 * 4096, "grows"))
		fail("data lost");
	if (!strstr(vmflags(dontfork), " dc"))
		fail("MADV_DONTFORK lost: %s", vmflags(dontfork));
	if (!strstr(vmflags(wipe), " wf"))
		fail("MADV_WIPEONFORK lost: %s", vmflags(wipe));
	if (!strstr(vmflags(locked), " lo"))
		fail("mlock lost: %s", vmflags(locked));
	if (!strstr(vmflags(grows + 4096), " gd"))
		fail("MAP_GROWSDOWN lost: %s", vmflags(grows + 4096));
	if (strstr(vmflags(resv + (32 << 20)), " rd") || !strstr(vmflags(resv + (63 << 20)), " nr"))
		fail("the PROT_NONE reservation: %s", vmflags(resv + (32 << 20)));
	if (memcmp(pastend, "short", 5))
		fail("the short file's data");
	if (!vmflags(pastend + 2 * 4096)[0])
		fail("the mapping past the file's end is shorter");
	/* The child was asked too: wait for its write. */
	for (int i = 0; i < 2000 && strcmp(shared, "from the child"); i++)
		usleep(1000);
	if (strcmp(shared, "from the child"))
		fail("shared anonymous memory not shared with the child: %s", shared);
}

/* ---- threads ---- */
static pthread_t masked, late;
static pid_t masked_tid;
static volatile int late_go;
static struct robust_list_head robust_head;

static unsigned long long masked_blk0;
static volatile int masked_asked;
static const char *masked_why;

/* SigBlk of /proc/self/task/TID/status. */
static unsigned long long blocked_of(pid_t tid)
{
	char p[64], l[256];
	snprintf(p, sizeof p, "/proc/self/task/%d/status", tid);
	FILE *f = fopen(p, "r");
	unsigned long long blk = 0;
	while (f && fgets(l, sizeof l, f))
		if (!strncmp(l, "SigBlk:", 7))
			blk = strtoull(l + 7, NULL, 16);
	if (f)
		fclose(f);
	return blk;
}

extern ptrdiff_t __rseq_offset;
extern unsigned int __rseq_size;

/* The calling thread's rseq area still registered and updated. */
static const char *rseq_check(void)
{
	if (!__rseq_size)
		return NULL;
	volatile struct {
		unsigned cpu_id_start, cpu_id;
	} *rs = (void *)((char *)__builtin_thread_pointer() + __rseq_offset);
	/* The cpu may change between the two reads: try a few times. */
	int same = 0;
	for (int i = 0; i < 100 && !same; i++) {
		unsigned cpu = ~0U;
		syscall(SYS_getcpu, &cpu, NULL, NULL);
		same = rs->cpu_id == cpu;
	}
	if (!same)
		return "rseq cpu_id is not this cpu";
	errno = 0;
	if (syscall(SYS_rseq, rs, __rseq_size < 32 ? 32 : __rseq_size, 0, 0x53053053) != -1 ||
	    errno != EBUSY)
		return "rseq not registered";
	return NULL;
}

static void *masked_main(void *arg)
{
	(void)arg;
	sigset_t s;
	sigfillset(&s);
	pthread_sigmask(SIG_BLOCK, &s, NULL);
	masked_tid = gettid();
	for (;;) {
		usleep(1000);
		if (masked_asked) {
			masked_why = rseq_check();
			masked_asked = 0;
		}
	}
	return NULL;
}

static void *late_main(void *arg)
{
	(void)arg;
	while (!late_go)
		usleep(1000);
	return (void *)0x5eed;
}

static void threads(void)
{
	robust_head.list.next = &robust_head.list;
	robust_head.futex_offset = 8;
	if (syscall(SYS_set_robust_list, &robust_head, sizeof robust_head))
		exit(2);
	if (pthread_create(&masked, NULL, masked_main, NULL) ||
	    pthread_create(&late, NULL, late_main, NULL))
		exit(2);
	while (!masked_tid)
		usleep(1000);
	masked_blk0 = blocked_of(masked_tid);
}

static void threads_check(void)
{
	if (blocked_of(masked_tid) != masked_blk0)
		fail("the masked thread's mask %llx, not %llx", blocked_of(masked_tid), masked_blk0);
	struct robust_list_head *h = NULL;
	size_t len = 0;
	if (syscall(SYS_get_robust_list, 0, &h, &len) || h != &robust_head || len != sizeof robust_head)
		fail("robust list %p", (void *)h);
	const char *w = rseq_check();
	if (w)
		fail("main thread: %s", w);
	masked_asked = 1;
	for (int i = 0; i < 1000 && masked_asked; i++)
		usleep(1000);
	if (masked_asked)
		fail("the masked thread did not answer");
	else if (masked_why)
		fail("masked thread: %s", masked_why);
	late_go = 1;
	void *ret = NULL;
	if (pthread_join(late, &ret) || ret != (void *)0x5eed)
		fail("join of the late thread");
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	syscall(SYS_close_range, 3, ~0U, 0);
	result = argv[2];
	const char *mode = argv[1];
	void (*check)(void);
	/* Before any mode's threads: they inherit it. */
	signal(SIGUSR1, on_usr1);
	if (!strcmp(mode, "signals")) {
		signals();
		check = signals_check;
	} else if (!strcmp(mode, "itimers")) {
		itimers();
		check = itimers_check;
	} else if (!strcmp(mode, "prctl")) {
		prctls();
		check = prctls_check;
	} else if (!strcmp(mode, "limits")) {
		limits();
		check = limits_check;
	} else if (!strcmp(mode, "cwd-deleted")) {
		cwd_deleted();
		check = cwd_deleted_check;
	} else if (!strcmp(mode, "fds")) {
		fds();
		check = fds_check;
	} else if (!strcmp(mode, "pipe-size")) {
		pipe_size();
		check = pipe_size_check;
	} else if (!strcmp(mode, "chroot")) {
		chroot_mode();
		check = chroot_check;
	} else if (!strcmp(mode, "fown")) {
		fown();
		check = fown_check;
	} else if (!strcmp(mode, "timerfd-ticks")) {
		timerfd_ticks();
		check = timerfd_ticks_check;
	} else if (!strcmp(mode, "madvise")) {
		madv();
		check = madv_check;
	} else if (!strcmp(mode, "memfd-map")) {
		memfd_map();
		check = memfd_map_check;
	} else if (!strcmp(mode, "nofile-low")) {
		nofile_low();
		check = nofile_low_check;
	} else if (!strcmp(mode, "sched")) {
		sched();
		check = sched_check;
	} else if (!strcmp(mode, "sigflags")) {
		sigflags();
		check = sigflags_check;
	} else if (!strcmp(mode, "inotify")) {
		inotify();
		check = inotify_check;
	} else if (!strcmp(mode, "fanotify")) {
		fanotify();
		check = fanotify_check;
	} else if (!strcmp(mode, "memfd")) {
		memfd();
		check = memfd_check;
	} else if (!strcmp(mode, "pidfd")) {
		pidfd_mode();
		check = pidfd_check;
	} else if (!strcmp(mode, "pidfd-exited")) {
		pidfd_exited();
		check = pidfd_exited_check;
	} else if (!strcmp(mode, "memory")) {
		memory();
		check = memory_check;
	} else if (!strcmp(mode, "threads")) {
		threads();
		check = threads_check;
	} else {
		return 2;
	}
	serve(argv[3], check);
}
