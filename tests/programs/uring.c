/*
 * uring RESULT FILE: 16 anonymous pages filled with 'A', registered as an
 * io_uring fixed buffer (pinned). SIGUSR2: the kernel reads FILE (all
 * 'B') into the buffer (READ_FIXED: no page fault in the task), then the
 * ring is closed. SIGUSR1: checks the buffer holds what it should and
 * appends "OK ..." or "FAIL ..." to RESULT. Write tracking sees no write
 * here: crit must copy such a task whole after a pre-dump.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/io_uring.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#define LEN (16 * 4096)
static volatile sig_atomic_t chk, go;
static void h1(int s) { (void)s; chk = 1; }
static void h2(int s) { (void)s; go = 1; }
int main(int c, char **v)
{
	if (c < 3)
		return 2;
	int rfd = open(v[1], O_WRONLY | O_APPEND | O_CREAT, 0600);
	unsigned char *buf = mmap(0, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(buf, 'A', LEN);
	unsigned char expect = 'A';
	struct io_uring_params p = { 0 };
	int ring = syscall(__NR_io_uring_setup, 4, &p);
	if (ring < 0) { perror("setup"); return 1; }
	size_t sqsz = p.sq_off.array + p.sq_entries * 4, cqsz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	char *sq = mmap(0, sqsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQ_RING);
	char *cq = mmap(0, cqsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_CQ_RING);
	struct io_uring_sqe *sqes = mmap(0, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQES);
	struct iovec iv = { buf, LEN };
	if (syscall(__NR_io_uring_register, ring, IORING_REGISTER_BUFFERS, &iv, 1)) { perror("register"); return 1; }
	signal(SIGUSR1, h1); signal(SIGUSR2, h2);
	printf("READY %d\n", getpid()); fflush(stdout);
	for (;;) {
		pause();
		if (go == 1) {
			go = 2;
			int f = open(v[2], O_RDONLY);
			unsigned *tail = (unsigned *)(sq + p.sq_off.tail), *arr = (unsigned *)(sq + p.sq_off.array), mask = *(unsigned *)(sq + p.sq_off.ring_mask);
			unsigned t = *tail;
			struct io_uring_sqe *e = &sqes[t & mask];
			memset(e, 0, sizeof *e);
			e->opcode = IORING_OP_READ_FIXED; e->fd = f; e->addr = (unsigned long)buf; e->len = LEN; e->off = 0; e->buf_index = 0;
			arr[t & mask] = t & mask;
			__atomic_store_n(tail, t + 1, __ATOMIC_RELEASE);
			int r = syscall(__NR_io_uring_enter, ring, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0);
			struct io_uring_cqe *cqe = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
			char l[100]; int n = sprintf(l, "read_fixed enter=%d res=%d\n", r, cqe[0].res); write(rfd, l, n);
			close(f);
			munmap(sq, sqsz); munmap(cq, cqsz); munmap(sqes, p.sq_entries * sizeof(struct io_uring_sqe));
			close(ring);
			expect = 'B';
		}
		if (chk) {
			chk = 0; int bad = -1;
			for (int i = 0; i < LEN; i++) if (buf[i] != expect) { bad = i; break; }
			char l[100]; int n = bad < 0 ? sprintf(l, "OK expect %c\n", expect) : sprintf(l, "FAIL byte %d is %c, expected %c\n", bad, buf[bad], expect);
			write(rfd, l, n);
		}
	}
}
