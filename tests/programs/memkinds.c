/*
 * memkinds RESULT [MIB]: private anonymous memory of several kinds, MIB
 * MiB each (default 8), every page written: a locked mapping (MAP_LOCKED), a growsdown one, a read-only
 * one, one with a PROT_NONE stretch in its middle and one PROT_NONE
 * whole. Prints "READY pid" and, on SIGUSR1, checks every byte (and that
 * the locked mapping is locked again) and appends "OK pid" or
 * "FAIL ..." to RESULT.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define KINDS 5

static size_t len = 8UL << 20;

static volatile sig_atomic_t check;
static void on_usr1(int s) { (void)s; check = 1; }

static unsigned char want(int k, size_t i) { return (unsigned char)(i * (7 + 2 * k) + k); }

/* Whether some mapping of ours is locked (smaps' VmFlags "lo"). */
static int locked(void)
{
	char line[512];
	int n = 0;
	FILE *f = fopen("/proc/self/smaps", "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, "VmFlags:", 8) && strstr(line, " lo"))
			n++;
	fclose(f);
	return n;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	if (argc > 2)
		len = (size_t)atol(argv[2]) << 20;
	int flags[KINDS] = { MAP_LOCKED, MAP_GROWSDOWN, 0, 0, 0 };
	unsigned char *m[KINDS];
	for (int k = 0; k < KINDS; k++) {
		m[k] = mmap(NULL, len, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | flags[k], -1, 0);
		if (m[k] == MAP_FAILED)
			return 1;
		for (size_t i = 0; i < len; i++)
			m[k][i] = want(k, i);
	}
	if (mprotect(m[2], len, PROT_READ) || mprotect(m[3] + len / 2, len / 4, PROT_NONE) ||
	    mprotect(m[4], len, PROT_NONE))
		return 1;
	signal(SIGUSR1, on_usr1);
	printf("READY %d\n", getpid());
	fflush(stdout);
	for (;;) {
		pause();
		if (!check)
			continue;
		check = 0;
		mprotect(m[3] + len / 2, len / 4, PROT_READ);
		mprotect(m[4], len, PROT_READ);
		char line[100];
		int n = 0;
		for (int k = 0; k < KINDS && !n; k++)
			for (size_t i = 0; i < len; i++)
				if (m[k][i] != want(k, i)) {
					n = snprintf(line, sizeof line, "FAIL kind %d byte %zu is %d\n",
						     k, i, m[k][i]);
					break;
				}
		mprotect(m[3] + len / 2, len / 4, PROT_NONE);
		mprotect(m[4], len, PROT_NONE);
		if (!n && !locked())
			n = snprintf(line, sizeof line, "FAIL nothing locked\n");
		if (!n)
			n = snprintf(line, sizeof line, "OK %d\n", getpid());
		int fd = open(argv[1], O_WRONLY | O_APPEND | O_CREAT, 0600);
		if (fd >= 0) {
			write(fd, line, n);
			close(fd);
		}
	}
}
