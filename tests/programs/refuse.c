/* A task holding what crit dump refuses: a pidfd of its parent, outside
 * the tree (no restore could open it again), or with argv[2] "mdwe", memory-deny-write-execute
 * (prctl PR_SET_MDWE, which CRIU's images cannot record), or with
 * "uffd-served" a mapping registered for missing faults with a
 * userfaultfd that only its parent (outside the tree) holds, or with
 * "hugetlb" 2 MiB of hugetlb memory, or with "bpf-filter" a UDP socket
 * (fd 3) with an eBPF socket filter (SO_ATTACH_BPF), or with "udp-cork"
 * a corked UDP socket (fd 3) holding a datagram. Its dump
 * must be refused and it must keep running. Writes a heartbeat counter to
 * argv[1] every 2 ms. Prints "READY <pid>", or "NOMDWE" where the kernel
 * lacks MDWE (before Linux 6.3). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* The child registers 16 pages for missing faults and passes the
 * userfaultfd to this process, which holds it (nobody serves faults:
 * the child never touches the pages) until the child ends. */
static int uffd_served(void)
{
	int sp[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp))
		return -1;
	pid_t child = fork();
	if (child < 0)
		return -1;
	if (child == 0) {
		close(sp[0]);
		int u = syscall(SYS_userfaultfd, O_CLOEXEC);
		struct uffdio_api api = { .api = UFFD_API };
		void *p = mmap(NULL, 16 << 12, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		struct uffdio_register reg = {
			.range = { .start = (unsigned long)p, .len = 16 << 12 },
			.mode = UFFDIO_REGISTER_MODE_MISSING,
		};
		if (u < 0 || ioctl(u, UFFDIO_API, &api) || p == MAP_FAILED ||
		    ioctl(u, UFFDIO_REGISTER, &reg))
			_exit(1);
		char byte = 'u';
		struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
		union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } cu;
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
				    .msg_control = cu.buf, .msg_controllen = sizeof(cu.buf) };
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &u, sizeof(int));
		if (sendmsg(sp[1], &m, 0) != 1)
			_exit(1);
		close(u);
		close(sp[1]);
		return 0;
	}
	close(sp[1]);
	char byte;
	union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } cu;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
			    .msg_control = cu.buf, .msg_controllen = sizeof(cu.buf) };
	if (recvmsg(sp[0], &m, 0) != 1)
		_exit(1);
	/* The received userfaultfd stays open here until the child ends. */
	int st;
	waitpid(child, &st, 0);
	_exit(0);
}

/* A UDP socket with an eBPF socket filter that keeps every packet
 * (r0 = -1; exit). */
static int bpf_filter(void)
{
	struct bpf_insn prog[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = -1 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	union bpf_attr a;
	memset(&a, 0, sizeof a);
	a.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
	a.insns = (unsigned long)prog;
	a.insn_cnt = 2;
	a.license = (unsigned long)"GPL";
	int p = syscall(SYS_bpf, BPF_PROG_LOAD, &a, sizeof a);
	if (p < 0 || s != 3 || setsockopt(s, SOL_SOCKET, SO_ATTACH_BPF, &p, sizeof p))
		return -1;
	close(p);
	return 0;
}

#define PR_SET_MDWE_ 65
#define PR_MDWE_REFUSE_EXEC_GAIN_ 1

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	/* Nothing inherited from the test harness: fd numbers are checked. */
	syscall(SYS_close_range, 3, ~0U, 0);
	if (argc > 2 && !strcmp(argv[2], "uffd-served")) {
		if (uffd_served())
			return 1;
	} else if (argc > 2 && !strcmp(argv[2], "bpf-filter")) {
		if (bpf_filter())
			return 1;
	} else if (argc > 2 && !strcmp(argv[2], "udp-cork")) {
		int s = socket(AF_INET, SOCK_DGRAM, 0), on = 1;
		struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(9),
					  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		if (s != 3 || setsockopt(s, IPPROTO_UDP, UDP_CORK, &on, sizeof on) ||
		    sendto(s, "held", 4, 0, (void *)&to, sizeof to) != 4)
			return 1;
	} else if (argc > 2 && !strcmp(argv[2], "hugetlb")) {
		/* No page is reserved (MAP_NORESERVE) or touched: this needs no
		 * huge pages set aside on the machine. */
		if (mmap(NULL, 2 << 20, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_NORESERVE,
			 -1, 0) == MAP_FAILED)
			return 1;
	} else if (argc > 2 && !strcmp(argv[2], "mdwe")) {
		if (prctl(PR_SET_MDWE_, PR_MDWE_REFUSE_EXEC_GAIN_, 0, 0, 0)) {
			printf("NOMDWE\n");
			return 1;
		}
	} else if (syscall(SYS_pidfd_open, getppid(), 0) < 0) {
		return 1;
	}
	int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	printf("READY %d\n", getpid());
	fflush(stdout);
	for (unsigned long n = 0;; n++) {
		char b[32];
		int l = snprintf(b, sizeof(b), "%lu\n", n);
		pwrite(fd, b, l, 0);
		usleep(2000);
	}
}
