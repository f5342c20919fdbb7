/* Reads stdin and reports each chunk as "got: <chunk>" (chunk without its
 * trailing newline). A SIGUSR1 handler (SA_RESTART) prints "usr1". Any
 * read error is reported as "err <errno>" and ends the program.
 * Prints "ready\n" before its first read. */
#include <sys/syscall.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void on_usr1(int sig)
{
	(void)sig;
	static const char m[] = "usr1\n";
	if (write(1, m, sizeof(m) - 1) < 0)
		_exit(3);
}

int main(void)
{
	/* Nothing inherited from the test harness: fd numbers are checked. */
	syscall(SYS_close_range, 3, ~0U, 0);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	printf("ready\n");
	fflush(stdout);
	char buf[256];
	for (;;) {
		ssize_t n = read(0, buf, sizeof(buf) - 1);
		if (n < 0) {
			printf("err %d\n", errno);
			fflush(stdout);
			return 2;
		}
		if (n == 0)
			return 0;
		buf[n] = 0;
		if (n > 0 && buf[n - 1] == '\n')
			buf[n - 1] = 0;
		printf("got: %s\n", buf);
		fflush(stdout);
	}
}
