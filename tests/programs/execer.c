/* A task that execs itself between dumps: execer STATE [again].
 * Maps 512 private pages and writes a pattern into them (a different
 * one after the exec), prints "READY <pid>" and waits. SIGUSR1 makes it
 * exec itself with "again"; once the new image has written its pages it
 * writes "execd" to STATE. SIGUSR2 makes it check its pages and write
 * "OK" or "FAIL page N" to STATE. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGES 512
static volatile sig_atomic_t do_exec, do_check;
static void on_usr1(int s) { (void)s; do_exec = 1; }
static void on_usr2(int s) { (void)s; do_check = 1; }

static void say(const char *path, const char *what)
{
	FILE *f = fopen(path, "w");
	if (f) {
		fputs(what, f);
		fclose(f);
	}
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	int again = argc > 2 && !strcmp(argv[2], "again");
	unsigned char seed = again ? 0xa5 : 0x3c;
	unsigned char *p = mmap(NULL, PAGES * 4096L, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 3;
	for (long i = 0; i < PAGES; i++)
		memset(p + i * 4096, (unsigned char)(seed + i), 4096);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_usr2;
	sigaction(SIGUSR2, &sa, NULL);
	if (again) {
		say(argv[1], "execd\n");
	} else {
		printf("READY %d\n", getpid());
		fflush(stdout);
	}
	for (;;) {
		pause();
		if (do_exec) {
			char *args[] = { argv[0], argv[1], "again", NULL };
			execv("/proc/self/exe", args);
			return 4;
		}
		if (do_check) {
			do_check = 0;
			char msg[64] = "OK\n";
			for (long i = 0; i < PAGES * 4096L; i++)
				if (p[i] != (unsigned char)(seed + i / 4096)) {
					snprintf(msg, sizeof msg, "FAIL page %ld\n", i / 4096);
					break;
				}
			say(argv[1], msg);
		}
	}
}
