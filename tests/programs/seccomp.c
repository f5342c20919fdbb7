/* Two seccomp filters (allow everything), installed one after the other
 * with no_new_privs. Prints "READY <pid>". */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int install(int n)
{
	struct sock_filter insns[4];
	for (int i = 0; i < n - 1; i++)
		insns[i] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 0);
	insns[n - 1] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	struct sock_fprog prog = { .len = n, .filter = insns };
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

int main(void)
{
	/* Nothing inherited from the test harness: fd numbers are checked. */
	syscall(SYS_close_range, 3, ~0U, 0);
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	if (install(1) || install(3))
		return 1;
	printf("READY %d\n", getpid());
	fflush(stdout);
	for (;;)
		pause();
}
