/* The scale benchmark's task tree (scripts/bench-scale.sh):
 *
 *   scale TASKS MIB FDS RESULT
 *
 * TASKS processes in a tree of fan-out 8 (the root is task 0; task i's
 * children are 8i+1..8i+8), each holding MIB MiB of private memory
 * written with a pattern of its own, and the root also FDS descriptors
 * (a quarter as pipes, half the ends, the rest duplicates of /dev/null).
 * Once every task is set up the root prints "READY <pid>".
 *
 * Sent SIGUSR1 (after a restore), each task checks its memory and its
 * number of open descriptors and appends one line to RESULT, opened
 * before the dump: "OK <index>" or "FAIL <index> <why>". */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int index_, result_fd, want_fds;
static unsigned char *mem;
static size_t mem_len;
static volatile sig_atomic_t check;

static unsigned char pattern(size_t off)
{
	return (unsigned char)(off * 31 + index_ * 7 + (off >> 12));
}

static void on_usr1(int s)
{
	(void)s;
	check = 1;
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	struct dirent *e;
	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory's own fd */
}

static void report(void)
{
	char line[128];
	size_t bad = mem_len;
	for (size_t o = 0; o < mem_len; o += 512)
		if (mem[o] != pattern(o)) {
			bad = o;
			break;
		}
	int fds = count_fds();
	if (bad != mem_len)
		snprintf(line, sizeof line, "FAIL %d memory at %zu\n", index_, bad);
	else if (fds != want_fds)
		snprintf(line, sizeof line, "FAIL %d %d fds, want %d\n", index_, fds, want_fds);
	else
		snprintf(line, sizeof line, "OK %d\n", index_);
	if (write(result_fd, line, strlen(line)) < 0)
		_exit(3);
}

static void setup(int mib)
{
	mem_len = (size_t)mib << 20;
	if (mem_len) {
		mem = mmap(NULL, mem_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (mem == MAP_FAILED)
			_exit(2);
		for (size_t o = 0; o < mem_len; o += 512)
			mem[o] = pattern(o);
	}
}

int main(int argc, char **argv)
{
	syscall(SYS_close_range, 3, ~0U, 0);
	if (argc != 5) {
		fprintf(stderr, "usage: scale TASKS MIB FDS RESULT\n");
		return 1;
	}
	int tasks = atoi(argv[1]), mib = atoi(argv[2]), nfds = atoi(argv[3]);
	result_fd = open(argv[4], O_WRONLY | O_APPEND | O_CREAT, 0600);
	if (result_fd < 0)
		return 1;
	struct sigaction sa = { .sa_handler = on_usr1 };
	sigaction(SIGUSR1, &sa, NULL);
	int ready[2];
	if (pipe(ready))
		return 1;
	/* Fork the subtree below this task, breadth first by index. */
	for (int c = 1; c <= 8; c++) {
		int child = 8 * index_ + c;
		if (child >= tasks)
			break;
		pid_t p = fork();
		if (p < 0)
			return 1;
		if (p == 0) {
			index_ = child;
			c = 0; /* now fork this child's own children */
			continue;
		}
	}
	setup(mib);
	if (index_ == 0) {
		struct rlimit r;
		getrlimit(RLIMIT_NOFILE, &r);
		r.rlim_cur = r.rlim_max;
		setrlimit(RLIMIT_NOFILE, &r);
		int made = 0, devnull = open("/dev/null", O_RDONLY);
		if (devnull < 0)
			return 1;
		made++;
		while (made + 2 <= nfds / 2) {
			int p[2];
			if (pipe(p))
				return 4;
			made += 2;
		}
		while (made < nfds) {
			if (dup(devnull) < 0)
				return 5;
			made++;
		}
		close(ready[1]);
		/* Every other task holds a write end: EOF once all are set up. */
		char b;
		while (read(ready[0], &b, 1) > 0)
			;
		want_fds = count_fds();
		printf("READY %d\n", getpid());
		fflush(stdout);
	} else {
		close(ready[0]);
		want_fds = count_fds() - 1;
		close(ready[1]);
	}
	for (;;) {
		pause();
		if (check) {
			check = 0;
			report();
		}
	}
}
