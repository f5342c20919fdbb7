/* A three-process tree for restore tests: the root is a session leader,
 * its child leads a new process group, the grandchild is in that group.
 * Each task blocks in read() on its own pipe (so it is dumped inside an
 * interrupted syscall, rax = -ERESTARTSYS). On SIGUSR1 (SA_RESTART) the
 * handler writes one byte to that pipe: the restarted read() returns it and
 * the task writes "OK <role>" to $RESULT.<role>. Ready when $READY holds
 * three lines. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int pfd[2];

static void on_usr1(int sig) {
    (void)sig;
    char c = 'x';
    if (write(pfd[1], &c, 1) != 1) _exit(3);
}

static void report(const char *role, const char *what) {
    char path[512];
    snprintf(path, sizeof path, "%s.%s", getenv("RESULT"), role);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "%s %s\n", what, role);
        fclose(f);
    }
}

static void serve(const char *role) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    if (pipe(pfd)) _exit(2);
    int r = open(getenv("READY"), O_WRONLY | O_APPEND);
    dprintf(r, "%s %d\n", role, getpid());
    close(r);
    for (;;) {
        char c;
        ssize_t n = read(pfd[0], &c, 1);
        if (n == 1 && c == 'x')
            report(role, "OK");
        else {
            char m[64];
            snprintf(m, sizeof m, "FAIL read=%zd errno=%d", n, errno);
            report(role, m);
        }
    }
}

int main(void) {
    if (setsid() < 0) return 1;
    pid_t b = fork();
    if (b == 0) {
        setpgid(0, 0);
        pid_t c = fork();
        if (c == 0) serve("grandchild");
        serve("child");
    }
    serve("main");
}
