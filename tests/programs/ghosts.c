/*
 * ghosts RESULT HEARTBEAT DIR: a task holding deleted files that a dump
 * must carry in ghost images (tests/ghost_files.rs). Writes a heartbeat
 * counter to HEARTBEAT every 2 ms and prints "READY pid". On SIGUSR1 it
 * checks its files and appends "OK pid" or "FAIL pid: why; why..." to
 * RESULT.
 *
 * Files made in DIR and unlinked, in this order:
 *  fd 3  sparse: 64 MiB long, data only in its first 4 KiB and in
 *        100 KiB from 40 MiB on; the rest is holes (so it takes well
 *        under the default 1 MiB ghost limit).
 *  fd 4  small: 100 bytes (below the size CRIU writes as chunks).
 *  fd 5  big: 3 MiB of data, over the default limit.
 * After a restore each must still be deleted, hold the same bytes, and
 * the sparse file must still be sparse.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "selfcheck.h"

#define MIB (1L << 20)
#define SPARSE_SIZE (64 * MIB)
#define FAR_AT (40 * MIB)
#define FAR_LEN (100 * 1024)
#define SMALL_LEN 100
#define BIG_LEN (3 * MIB)

/* The byte at `off` of file `which`: every file's bytes differ. */
static unsigned char pattern(int which, long off)
{
	return (unsigned char)((off * 7 + off / 4096 + which * 31) | 1);
}

static int fill(int fd, int which, long at, long len)
{
	static unsigned char b[64 * 1024];
	for (long done = 0; done < len;) {
		long n = len - done < (long)sizeof b ? len - done : (long)sizeof b;
		for (long i = 0; i < n; i++)
			b[i] = pattern(which, at + done + i);
		if (pwrite(fd, b, n, at + done) != n)
			return -1;
		done += n;
	}
	return 0;
}

/* Checks bytes [at, at+len) of `fd`: the pattern, or zeros (which < 0). */
static void expect(int fd, const char *name, int which, long at, long len)
{
	static unsigned char b[64 * 1024];
	for (long done = 0; done < len;) {
		long n = len - done < (long)sizeof b ? len - done : (long)sizeof b;
		if (pread(fd, b, n, at + done) != n) {
			fail("%s: short read at %ld", name, at + done);
			return;
		}
		for (long i = 0; i < n; i++) {
			unsigned char want = which < 0 ? 0 : pattern(which, at + done + i);
			if (b[i] != want) {
				fail("%s: byte %ld is %u, not %u", name, at + done + i, b[i], want);
				return;
			}
		}
		done += n;
	}
}

static void file_is(int fd, const char *name, long size)
{
	struct stat st;
	if (fstat(fd, &st)) {
		fail("%s: fstat: %s", name, strerror(errno));
		return;
	}
	if (st.st_size != size)
		fail("%s: size %ld, not %ld", name, (long)st.st_size, size);
	if (st.st_nlink != 0)
		fail("%s: has %ld links, not deleted", name, (long)st.st_nlink);
}

static void check(void)
{
	file_is(3, "sparse", SPARSE_SIZE);
	expect(3, "sparse", 0, 0, 4096);
	expect(3, "sparse", -1, 4096, 4096);
	expect(3, "sparse", -1, 20 * MIB, 64 * 1024);
	expect(3, "sparse", 0, FAR_AT, FAR_LEN);
	expect(3, "sparse", -1, SPARSE_SIZE - 4096, 4096);
	struct stat st;
	if (fstat(3, &st) == 0 && st.st_blocks * 512 > MIB)
		fail("sparse: takes %ld bytes: its holes were filled", (long)st.st_blocks * 512);
	file_is(4, "small", SMALL_LEN);
	expect(4, "small", 1, 0, SMALL_LEN);
	file_is(5, "big", BIG_LEN);
	expect(5, "big", 2, 0, BIG_LEN);
}

static int make(const char *dir, const char *name)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0640);
	if (fd >= 0 && unlink(p))
		return -1;
	return fd;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	syscall(SYS_close_range, 3, ~0U, 0);
	result = argv[1];
	signal(SIGUSR1, on_usr1);
	int sparse = make(argv[3], "sparse");
	int small = make(argv[3], "small");
	int big = make(argv[3], "big");
	if (sparse != 3 || small != 4 || big != 5)
		return 3;
	if (ftruncate(sparse, SPARSE_SIZE) || fill(sparse, 0, 0, 4096) ||
	    fill(sparse, 0, FAR_AT, FAR_LEN) || fill(small, 1, 0, SMALL_LEN) ||
	    fill(big, 2, 0, BIG_LEN))
		return 4;
	serve(argv[2], check);
}
