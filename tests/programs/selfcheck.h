/*
 * What the self-checking test programs share (hostile.c, states.c,
 * sockstates.c, locks.c, leases.c): a heartbeat, and on SIGUSR1 (sent
 * after a restore) a check of the task's own state. The check adds its
 * reasons with fail(); report() appends "FAIL pid: why; why" to RESULT,
 * or "OK pid".
 * Included by the program's one source file.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t asked;
static void on_usr1(int s) { (void)s; asked = 1; }

static const char *result; /* RESULT's path */
static int result_fd = -1; /* RESULT opened early (before a chroot), or -1 */
static int quiet;          /* a second task of the tree: no READY line */
static char why[4096];

/* Adds a reason to the answer. */
static void fail(const char *fmt, ...)
{
	size_t n = strlen(why);
	if (n)
		n += snprintf(why + n, sizeof why - n, "; ");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why + n, sizeof why - n, fmt, ap);
	va_end(ap);
}

/* Appends the answer to RESULT and starts the next one afresh. */
static void report(void)
{
	FILE *f = result_fd >= 0 ? fdopen(dup(result_fd), "a") : fopen(result, "a");
	if (!f)
		return;
	if (why[0])
		fprintf(f, "FAIL %d: %s\n", getpid(), why);
	else
		fprintf(f, "OK %d\n", getpid());
	fclose(f);
	why[0] = 0;
}

/* Prints "READY pid" (unless quiet), then writes a counter to the file
 * `heartbeat` every 2 ms; on SIGUSR1 (on_usr1 installed by the caller)
 * runs `check` and reports. Never returns. */
static void serve(const char *heartbeat, void (*check)(void))
{
	int hb = open(heartbeat, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (!quiet) {
		printf("READY %d\n", getpid());
		fflush(stdout);
	}
	for (unsigned long n = 0;; n++) {
		if (asked) {
			asked = 0;
			check();
			report();
		}
		char b[32];
		int l = snprintf(b, sizeof(b), "%lu\n", n);
		/* Unchecked: a chrooted task may have no heartbeat file. */
		pwrite(hb, b, l, 0);
		usleep(2000);
	}
}
