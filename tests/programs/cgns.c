/* A task in a cgroup namespace of its own: it joins DIR (argv[1], a
 * cgroup directory), unshares its cgroup namespace there, then joins
 * DIR/inner; so it sees its cgroup as /inner on that hierarchy. Prints
 * "READY <pid>", then on SIGUSR1 writes /proc/self/cgroup (its view) to
 * argv[2]. */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>

static volatile sig_atomic_t asked;
static void on_usr1(int s) { (void)s; asked = 1; }

static int join(const char *dir)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/cgroup.procs", dir);
	int fd = open(p, O_WRONLY);
	if (fd < 0)
		return -1;
	int r = write(fd, "0", 1) == 1 ? 0 : -1;
	close(fd);
	return r;
}

int main(int argc, char **argv)
{
	if (argc < 3 || setsid() < 0)
		return 1;
	char inner[512];
	snprintf(inner, sizeof(inner), "%s/inner", argv[1]);
	if (join(argv[1]) || unshare(CLONE_NEWCGROUP) || join(inner))
		return 2;
	signal(SIGUSR1, on_usr1);
	printf("READY %d\n", getpid());
	fflush(stdout);
	for (;;) {
		/* Polled, not pause(): a signal before it would be lost. */
		if (!asked) {
			usleep(10000);
			continue;
		}
		asked = 0;
		char buf[4096];
		int in = open("/proc/self/cgroup", O_RDONLY);
		ssize_t n = in < 0 ? 0 : read(in, buf, sizeof(buf));
		int out = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (out >= 0 && n > 0 && write(out, buf, n) != n)
			return 3;
		close(in);
		close(out);
	}
}
