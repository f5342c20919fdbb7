/* A small process tree: the root forks 2 children, each forks one
 * grandchild. Children spin, grandchildren sleep in pause(). Once all
 * exist, the root prints "ready\n" and sleeps in pause(). */
#include <sys/syscall.h>
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	/* Nothing inherited from the test harness: fd numbers are checked. */
	syscall(SYS_close_range, 3, ~0U, 0);
	int p[2];
	if (pipe(p))
		return 1;
	for (int i = 0; i < 2; i++) {
		pid_t c = fork();
		if (c < 0)
			return 1;
		if (c == 0) {
			pid_t g = fork();
			if (g < 0)
				_exit(1);
			if (g == 0) {
				char b = 'g';
				if (write(p[1], &b, 1) != 1)
					_exit(1);
				for (;;)
					pause();
			}
			char b = 'c';
			if (write(p[1], &b, 1) != 1)
				_exit(1);
			volatile unsigned long n = 0;
			for (;;)
				n++;
		}
	}
	char buf[4];
	int got = 0;
	while (got < 4) {
		ssize_t r = read(p[0], buf, 4 - got);
		if (r <= 0)
			return 1;
		got += r;
	}
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}
