/* One measurement of scripts/bench-scale.py: start the scale tree
 * (tests/programs/scale.c), dump it with one engine, restore it with the
 * same engine, have every restored task check itself, then kill and reap
 * everything so its pids are free again.
 *
 *   bench-scale-runner SCALE TASKS MIB FDS DIR DUMP... -- RESTORE...
 *
 * In the commands, {pid} stands for the tree's root and {dir} for DIR.
 * The runner is a child subreaper: the tree and everything the engines
 * leave behind are its children. Prints one line:
 *
 *   dump WALL CPU RSS restore WALL CPU RSS ok N of TASKS
 *
 * WALL in seconds (the command from start to exit: a detached restore
 * returns once the tree runs), CPU in seconds (user + system of the
 * command and of every process it or the tree spent it in, once reaped;
 * the tree's own work before the dump is not counted), RSS the command's
 * peak resident set in KiB (the largest of it and the children it waited
 * for). Then, after "machine", the CPU seconds the whole machine was busy
 * (user, nice, system, irq, softirq of /proc/stat, in 1/100 s) while the
 * dump ran and while the restore ran: what the rusage of the command
 * leaves out (the work of the target's own threads, such as an injected
 * vmsplice or a killed task freeing its memory, and of kernel threads)
 * is in there, and anything else the machine did meanwhile too.
 *
 * Right before the dump and before the restore the runner touches and
 * frees fresh memory (bench-warm.h): twice what the tree holds plus
 * 1 GiB (freed pages need not be the first taken again), up to what is
 * available, so that neither engine meets memory the VM's host took
 * back; BENCH_WARM=0 leaves that out. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench-warm.h"

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* Seconds all CPUs spent busy since boot (/proc/stat). */
static double machine_busy(void)
{
	unsigned long long v[7] = {0};
	FILE *f = fopen("/proc/stat", "r");
	if (!f)
		return 0;
	int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
		       &v[4], &v[5], &v[6]);
	fclose(f);
	if (n != 7)
		return 0;
	/* user, nice, system, irq, softirq; not idle, iowait, steal */
	return (double)(v[0] + v[1] + v[2] + v[5] + v[6]) / sysconf(_SC_CLK_TCK);
}

static double cpu_children(void)
{
	struct rusage r;
	getrusage(RUSAGE_CHILDREN, &r);
	return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + r.ru_stime.tv_sec +
	       r.ru_stime.tv_usec / 1e6;
}

/* Reaps every child until none is left. */
static void reap_all(void)
{
	while (waitpid(-1, NULL, __WALL) > 0 || errno == EINTR)
		;
}

static void die(const char *what)
{
	perror(what);
	kill(0, SIGKILL);
	exit(1);
}

/* Runs argv (with {pid} and {dir} replaced); returns its wall time, its
 * peak RSS in *rss, and its exit status in *status. */
static double run(char **argv, int n, pid_t root, const char *dir, long *rss, int *status)
{
	char pid_s[32];
	snprintf(pid_s, sizeof pid_s, "%d", root);
	char **a = calloc(n + 1, sizeof(char *));
	for (int i = 0; i < n; i++)
		a[i] = !strcmp(argv[i], "{pid}") ? pid_s : !strcmp(argv[i], "{dir}") ? (char *)dir : argv[i];
	double t0 = now();
	pid_t c = fork();
	if (c < 0)
		die("fork");
	if (c == 0) {
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(null, 1);
		execvp(a[0], a);
		_exit(127);
	}
	struct rusage r;
	if (wait4(c, status, 0, &r) != c)
		die("wait4");
	*rss = r.ru_maxrss;
	free(a);
	return now() - t0;
}

static long lines(const char *path, int *ok)
{
	FILE *f = fopen(path, "r");
	char buf[256];
	long n = 0;
	*ok = 0;
	if (!f)
		return 0;
	while (fgets(buf, sizeof buf, f)) {
		n++;
		*ok += !strncmp(buf, "OK ", 3);
	}
	fclose(f);
	return n;
}

int main(int argc, char **argv)
{
	if (argc < 9)
		return fprintf(stderr, "usage: bench-scale-runner SCALE TASKS MIB FDS DIR DUMP... -- RESTORE...\n"), 2;
	const char *scale = argv[1], *dir = argv[5];
	int tasks = atoi(argv[2]);
	int sep = 6;
	while (sep < argc && strcmp(argv[sep], "--"))
		sep++;
	if (sep >= argc - 1)
		return fprintf(stderr, "bench-scale-runner: no -- RESTORE command\n"), 2;
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	char result[4096];
	snprintf(result, sizeof result, "%s.result", dir);
	unlink(result);
	int out[2];
	if (pipe(out))
		die("pipe");
	pid_t root = fork();
	if (root == 0) {
		setsid();
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(out[1], 1);
		dup2(null, 2);
		execl(scale, scale, argv[2], argv[3], argv[4], result, (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	char ready[64] = "";
	ssize_t got = read(out[0], ready, sizeof ready - 1);
	if (got <= 0 || strncmp(ready, "READY", 5))
		die("the scale tree did not get ready");
	close(out[0]);

	const char *w = getenv("BENCH_WARM");
	long warm = (w && !strcmp(w, "0")) ? 0 : (long)tasks * atol(argv[3]) * 2 + 1024;
	long drss, rrss;
	int st;
	bench_warm(warm);
	double c0 = cpu_children(), m0 = machine_busy();
	double dwall = run(argv + 6, sep - 6, root, dir, &drss, &st);
	double dcpu = cpu_children() - c0, dmach = machine_busy() - m0;
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "bench-scale-runner: dump failed (status %d)\n", st);
		kill(-root, SIGKILL);
		reap_all();
		return 1;
	}
	/* The dumped tree is gone: reap it so its pids are free. */
	kill(-root, SIGKILL);
	reap_all();

	bench_warm(warm);
	double c1 = cpu_children(), m1 = machine_busy();
	double rwall = run(argv + sep + 1, argc - sep - 1, root, dir, &rrss, &st);
	double rmach = machine_busy() - m1;
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "bench-scale-runner: restore failed (status %d)\n", st);
		kill(-root, SIGKILL);
		reap_all();
		return 1;
	}
	/* Every restored task checks itself. */
	int ok = 0;
	kill(-root, SIGUSR1);
	double deadline = now() + 30;
	while (lines(result, &ok) < tasks && now() < deadline)
		usleep(2000);
	long n = lines(result, &ok);
	if (ok != tasks) {
		/* Say what went wrong: the lines that are not OK, and how many never came. */
		FILE *f = fopen(result, "r");
		char buf[256];
		while (f && fgets(buf, sizeof buf, f))
			if (strncmp(buf, "OK ", 3))
				fprintf(stderr, "bench-scale-runner: %s", buf);
		if (f)
			fclose(f);
		if (n < tasks)
			fprintf(stderr, "bench-scale-runner: %ld of %d tasks did not answer\n", tasks - n, tasks);
	}
	kill(-root, SIGKILL);
	reap_all();
	double rcpu = cpu_children() - c1;
	printf("dump %.4f %.4f %ld restore %.4f %.4f %ld ok %d of %d machine %.2f %.2f\n", dwall,
	       dcpu, drss, rwall, rcpu, rrss, ok, tasks, dmach, rmach);
	return ok == tasks ? 0 : 1;
}
