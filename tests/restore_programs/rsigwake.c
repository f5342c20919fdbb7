/* A signal that reaches a restored task before it is back inside the
 * syscall it was dumped in must act as on a task never dumped. Three
 * tasks, each with handlers for SIGUSR1 and SIGUSR2 that count:
 *
 *   pause    (the root) blocks in pause(): the first signal ends it with
 *            EINTR (the kernel's -ERESTARTNOHAND);
 *   read     blocks in read() on a pipe, handlers without SA_RESTART: the
 *            first signal ends it with EINTR (-ERESTARTSYS);
 *   restart  blocks in read(), SIGUSR1 with SA_RESTART: the read goes on
 *            after SIGUSR1 and only SIGUSR2 ends it with EINTR.
 *
 * When its call returns each task writes "OK <role>" or "FAIL <role> ..."
 * to $RESULT.<role>, then pauses for good. Ready when $READY holds three
 * lines. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t usr1, usr2;

static void on_usr1(int s) { (void)s; usr1++; }
static void on_usr2(int s) { (void)s; usr2++; }

static void handlers(int usr1_flags) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = usr1_flags;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_usr2;
    sa.sa_flags = 0;
    sigaction(SIGUSR2, &sa, NULL);
}

static void ready(const char *role) {
    int r = open(getenv("READY"), O_WRONLY | O_APPEND);
    dprintf(r, "%s %d\n", role, getpid());
    close(r);
}

/* The call returned `r` with errno `e`: OK when it was EINTR after
 * exactly the signals expected. */
static void report(const char *role, long r, int e, int want1, int want2) {
    char path[512];
    snprintf(path, sizeof path, "%s.%s", getenv("RESULT"), role);
    FILE *f = fopen(path, "w");
    if (!f)
        _exit(4);
    if (r == -1 && e == EINTR && usr1 == want1 && usr2 == want2)
        fprintf(f, "OK %s\n", role);
    else
        fprintf(f, "FAIL %s returned %ld errno %d after %d SIGUSR1, %d SIGUSR2\n", role, r, e,
                (int)usr1, (int)usr2);
    fclose(f);
    for (;;)
        pause();
}

static void reader(const char *role, int usr1_flags, int want2) {
    int p[2];
    char c;
    handlers(usr1_flags);
    if (pipe(p))
        _exit(2);
    ready(role);
    long n = read(p[0], &c, 1);
    report(role, n, errno, 1, want2);
}

int main(void) {
    handlers(0);
    if (fork() == 0)
        reader("read", 0, 0);
    if (fork() == 0)
        reader("restart", SA_RESTART, 1);
    ready("pause");
    long r = pause();
    report("pause", r, errno, 1, 0);
    return 0;
}
