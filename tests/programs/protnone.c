/*
 * protnone RESULT: 16 written pages, two of them then made PROT_NONE and
 * one write-only mapping; prints "READY pid" and, on SIGUSR1, checks
 * every byte and appends "OK" or "FAIL ..." to RESULT. The dump must
 * copy pages the task itself cannot read (CRIU's parasite does too).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGES 16
static volatile sig_atomic_t check;
static void on_usr1(int s) { (void)s; check = 1; }

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	long pg = sysconf(_SC_PAGESIZE);
	unsigned char *m = mmap(NULL, PAGES * pg, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return 1;
	for (int i = 0; i < PAGES; i++)
		memset(m + i * pg, 0x40 + i, pg);
	if (mprotect(m + 4 * pg, 2 * pg, PROT_NONE))
		return 1;
	signal(SIGUSR1, on_usr1);
	printf("READY %d\n", getpid());
	fflush(stdout);
	for (;;) {
		pause();
		if (!check)
			continue;
		check = 0;
		mprotect(m + 4 * pg, 2 * pg, PROT_READ);
		long bad = -1;
		for (long i = 0; i < PAGES * pg; i++)
			if (m[i] != 0x40 + i / pg) {
				bad = i;
				break;
			}
		mprotect(m + 4 * pg, 2 * pg, PROT_NONE);
		char line[100];
		int n = bad < 0 ? snprintf(line, sizeof line, "OK %d\n", getpid())
				: snprintf(line, sizeof line, "FAIL byte %ld is %d\n", bad, m[bad]);
		int fd = open(argv[1], O_WRONLY | O_APPEND | O_CREAT, 0600);
		if (fd >= 0) {
			write(fd, line, n);
			close(fd);
		}
	}
}
