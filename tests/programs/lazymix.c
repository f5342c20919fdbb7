/* A task that changes its memory while a lazy restore still brings it
 * in (tests/lazy.rs):
 *
 *   lazymix MIB RESULT [TRIGGER [PIECES]]
 *
 * MIB MiB of private memory in one mapping, each page stamped with its
 * index at both ends. Prints "READY <pid>". On SIGUSR1, or as soon as
 * the file TRIGGER exists (looked for every millisecond: the test makes
 * it while the task is dumped, so the restored task starts at once,
 * while its pages still arrive), before reading any page:
 *  - quarter 2 is moved by mremap (grown, so that it moves);
 *  - the first half of quarter 3 is dropped (madvise DONTNEED);
 *  - the second half of quarter 4 is unmapped;
 *  - a child (fork) checks quarter 1 and exits 0 or 1.
 * Then the dropped pages must read as zeros and are stamped anew, and
 * every page left is checked: quarter 1, the moved quarter 2, quarter 3
 * (new stamps, then old), the first half of quarter 4.
 * One line goes to RESULT: "OK <pages checked>" or "FAIL <what> <page>".
 *
 * With PIECES (TRIGGER "-" for none), the work is instead: the mapping
 * is cut into PIECES pieces and each, from the first, is moved by mremap
 * (grown by a page), one after the other while the pages still arrive;
 * then every page is checked where its piece went.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096
#define NEW 0x5a5a000000000000ULL

static volatile sig_atomic_t go;
static void on_usr1(int s) { (void)s; go = 1; }

static void stamp(unsigned char *p, uint64_t v)
{
	memcpy(p, &v, 8);
	memcpy(p + PAGE - 8, &v, 8);
}

static int holds(const unsigned char *p, uint64_t v)
{
	uint64_t a, b;
	memcpy(&a, p, 8);
	memcpy(&b, p + PAGE - 8, 8);
	return a == v && b == v;
}

static int zero(const unsigned char *p)
{
	for (int i = 0; i < PAGE; i++)
		if (p[i])
			return 0;
	return 1;
}

static FILE *out;
static void fail(const char *what, size_t page)
{
	fprintf(out, "FAIL %s %zu\n", what, page);
	fclose(out);
	exit(1);
}

/* Moves each of `pieces` pieces of the `n` pages at `m` and checks
 * every page; returns the pages checked. */
static size_t move_pieces(unsigned char *m, size_t n, size_t pieces)
{
	size_t per = n / pieces;
	unsigned char **at = calloc(pieces, sizeof(*at));
	if (!at)
		fail("calloc", 0);
	for (size_t k = 0; k < pieces; k++) {
		at[k] = mremap(m + k * per * PAGE, per * PAGE, (per + 1) * PAGE, MREMAP_MAYMOVE);
		if (at[k] == MAP_FAILED)
			fail("mremap", k * per);
	}
	size_t checked = 0;
	for (size_t k = 0; k < pieces; k++)
		for (size_t i = 0; i < per; i++, checked++)
			if (!holds(at[k] + i * PAGE, k * per + i))
				fail("piece", k * per + i);
	return checked;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], 0, 10) : 64;
	const char *result = argc > 2 ? argv[2] : "result";
	const char *trigger = argc > 3 && strcmp(argv[3], "-") ? argv[3] : 0;
	size_t pieces = argc > 4 ? strtoul(argv[4], 0, 10) : 0;
	size_t n = mib * 256, q = n / 4;
	unsigned char *m = mmap(0, n * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return 2;
	for (size_t i = 0; i < n; i++)
		stamp(m + i * PAGE, i);
	signal(SIGUSR1, on_usr1);
	printf("READY %d\n", getpid());
	fflush(stdout);
	while (!go) {
		if (trigger && access(trigger, F_OK) == 0)
			break;
		usleep(1000);
	}
	out = fopen(result, "a");
	if (!out)
		return 3;
	if (pieces) {
		fprintf(out, "OK %zu\n", move_pieces(m, n, pieces));
		fclose(out);
		go = 0;
		while (!go)
			pause();
		return 0;
	}
	/* All four at once, before any page is read: the daemon is still
	 * bringing them in. Quarter 2 moves (grown by one page, so it
	 * cannot stay); half of quarter 3 is dropped; half of quarter 4 is
	 * unmapped; a child checks quarter 1. */
	unsigned char *q2 = mremap(m + q * PAGE, q * PAGE, (q + 1) * PAGE, MREMAP_MAYMOVE);
	if (q2 == MAP_FAILED)
		fail("mremap", 0);
	unsigned char *q3 = m + 2 * q * PAGE;
	if (madvise(q3, q / 2 * PAGE, MADV_DONTNEED))
		fail("madvise", 2 * q);
	if (munmap(m + (3 * q + q / 2) * PAGE, (q - q / 2) * PAGE))
		fail("munmap", 3 * q);
	pid_t c = fork();
	if (c == 0) {
		for (size_t i = 0; i < q; i++)
			if (!holds(m + i * PAGE, i))
				_exit(1);
		_exit(0);
	}
	/* The dropped pages read as zeros, then get new stamps. */
	for (size_t i = 0; i < q / 2; i++) {
		if (!zero(q3 + i * PAGE))
			fail("dropped", 2 * q + i);
		stamp(q3 + i * PAGE, NEW + i);
	}
	int st = 0;
	if (c < 0 || waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st))
		fail("child", 0);
	size_t checked = 0;
	for (size_t i = 0; i < q; i++, checked++)
		if (!holds(m + i * PAGE, i))
			fail("first", i);
	for (size_t i = 0; i < q; i++, checked++)
		if (!holds(q2 + i * PAGE, q + i))
			fail("moved", q + i);
	for (size_t i = 0; i < q; i++, checked++)
		if (!holds(q3 + i * PAGE, i < q / 2 ? NEW + i : 2 * q + i))
			fail("third", 2 * q + i);
	for (size_t i = 0; i < q / 2; i++, checked++)
		if (!holds(m + (3 * q + i) * PAGE, 3 * q + i))
			fail("fourth", 3 * q + i);
	fprintf(out, "OK %zu\n", checked);
	fclose(out);
	go = 0;
	while (!go)
		pause();
	return 0;
}
