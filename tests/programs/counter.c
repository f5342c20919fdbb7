/* A counter-like task: a 4 MiB heap buffer with a pattern, a few
 * descriptors (/dev/null, a pipe with data, a regular file at an offset),
 * and a loop. Prints "READY <pid>" when set up. */
#include <sys/syscall.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>

int main(int argc, char **argv)
{
	/* Nothing inherited from the test harness: fd numbers are checked. */
	syscall(SYS_close_range, 3, ~0U, 0);
	size_t sz = 4 << 20;
	unsigned char *buf = malloc(sz);
	for (size_t i = 0; i < sz; i++)
		buf[i] = (unsigned char)(i * 7 + 3);
	int p[2];
	if (pipe(p))
		return 1;
	if (write(p[1], "pipe-data", 9) != 9)
		return 1;
	int dn = open("/dev/null", O_RDONLY);
	const char *path = argc > 1 ? argv[1] : "/tmp/crit-counter.txt";
	int rf = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (write(rf, "0123456789", 10) != 10)
		return 1;
	lseek(rf, 4, SEEK_SET);
	(void)dn;
	printf("READY %d %lx\n", getpid(), (unsigned long)buf);
	fflush(stdout);
	volatile unsigned long counter = 0;
	for (;;) {
		counter++;
		usleep(1000);
	}
}
