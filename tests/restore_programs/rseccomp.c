/* Seccomp for restore tests. With no_new_privs, the process installs
 * filter A (getcpu fails with EAGAIN); then thread t1 adds filter B
 * (sched_yield fails with EINVAL) for itself only. Each thread blocks in
 * read() on its own pipe. On SIGUSR1 (SA_RESTART) the handler writes a
 * byte to both pipes; each restarted read() returns it and its thread
 * checks its mode, its filter count and what its filters do, and writes
 * "OK tK" or "FAIL tK: why" to $RESULT.tK. Ready when $READY holds two
 * lines "tK TID". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int pipes[2][2];

static void on_usr1(int sig) {
    (void)sig;
    for (int k = 0; k < 2; k++)
        if (write(pipes[k][1], "x", 1) != 1) _exit(3);
}

/* Fails syscall `nr` with `err`, allows everything else. */
static int deny(int nr, int err) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | err),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog p = {.len = 4, .filter = f};
    return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &p);
}

static int filters_of_me(void) {
    FILE *f = fopen("/proc/thread-self/status", "r");
    char line[256];
    int n = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "Seccomp_filters:", 16)) n = atoi(line + 16);
    if (f) fclose(f);
    return n;
}

static void report(int k, const char *what) {
    char path[512];
    snprintf(path, sizeof path, "%s.t%d", getenv("RESULT"), k);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "%s t%d\n", what, k);
        fclose(f);
    }
}

static void *run(void *arg) {
    int k = (int)(long)arg;
    if (k == 1 && deny(SYS_sched_yield, EINVAL)) exit(4);
    int r = open(getenv("READY"), O_WRONLY | O_APPEND);
    dprintf(r, "t%d %d\n", k, (int)gettid());
    close(r);
    for (;;) {
        char c;
        ssize_t n = read(pipes[k][0], &c, 1);
        char why[128] = "";
        unsigned cpu;
        errno = 0;
        long g = syscall(SYS_getcpu, &cpu, NULL, NULL);
        int gerr = errno;
        errno = 0;
        long y = syscall(SYS_sched_yield);
        int yerr = errno;
        if (n != 1 || c != 'x')
            snprintf(why, sizeof why, "read=%zd errno=%d", n, errno);
        else if (prctl(PR_GET_SECCOMP) != 2)
            snprintf(why, sizeof why, "mode %d", prctl(PR_GET_SECCOMP));
        else if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
            snprintf(why, sizeof why, "no_new_privs lost");
        else if (filters_of_me() != k + 1)
            snprintf(why, sizeof why, "%d filters", filters_of_me());
        else if (g != -1 || gerr != EAGAIN)
            snprintf(why, sizeof why, "getcpu=%ld errno=%d", g, gerr);
        else if (k == 0 && y != 0)
            snprintf(why, sizeof why, "sched_yield=%ld errno=%d", y, yerr);
        else if (k == 1 && (y != -1 || yerr != EINVAL))
            snprintf(why, sizeof why, "sched_yield=%ld errno=%d", y, yerr);
        if (why[0]) {
            char m[160];
            snprintf(m, sizeof m, "FAIL: %s", why);
            report(k, m);
        } else
            report(k, "OK");
    }
    return NULL;
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    for (int k = 0; k < 2; k++)
        if (pipe(pipes[k])) return 2;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || deny(SYS_getcpu, EAGAIN)) return 5;
    pthread_t t;
    pthread_create(&t, NULL, run, (void *)1L);
    run(0);
}
