/* A task with three threads for restore tests. Each thread has its own
 * name, thread-local value (fs base), signal mask (thread k also blocks
 * SIGRTMIN+k) and sigaltstack, and blocks in read() on its own pipe. On
 * SIGUSR1 the handler (SA_RESTART) writes a byte to every pipe; each
 * restarted read() returns it and its thread checks its own state and
 * writes "OK tK" or "FAIL tK: why" to $RESULT.tK. Ready when $READY holds
 * three lines. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define N 3
static int pipes[N][2];
static __thread long tls_value;
static char stacks[N][65536];

static void on_usr1(int sig) {
    (void)sig;
    for (int k = 0; k < N; k++) {
        char c = 'x';
        if (write(pipes[k][1], &c, 1) != 1) _exit(3);
    }
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
    char name[16];
    snprintf(name, sizeof name, "rthr-%d", k);
    prctl(PR_SET_NAME, name);
    tls_value = 1000 + k;
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGRTMIN + k);
    pthread_sigmask(SIG_BLOCK, &m, NULL);
    stack_t ss = {.ss_sp = stacks[k], .ss_size = sizeof stacks[k], .ss_flags = 0};
    sigaltstack(&ss, NULL);
    int r = open(getenv("READY"), O_WRONLY | O_APPEND);
    dprintf(r, "t%d %d\n", k, (int)gettid());
    close(r);
    for (;;) {
        char c;
        ssize_t n = read(pipes[k][0], &c, 1);
        char why[128] = "";
        char got[16] = "";
        prctl(PR_GET_NAME, got);
        sigset_t now;
        pthread_sigmask(SIG_BLOCK, NULL, &now);
        stack_t cur;
        sigaltstack(NULL, &cur);
        if (n != 1 || c != 'x')
            snprintf(why, sizeof why, "read=%zd errno=%d", n, errno);
        else if (tls_value != 1000 + k)
            snprintf(why, sizeof why, "tls %ld", tls_value);
        else if (strcmp(got, name))
            snprintf(why, sizeof why, "name %s", got);
        else if (!sigismember(&now, SIGRTMIN + k) || sigismember(&now, SIGRTMIN + (k + 1) % N))
            snprintf(why, sizeof why, "mask");
        else if (cur.ss_sp != stacks[k] || cur.ss_size != sizeof stacks[k])
            snprintf(why, sizeof why, "altstack %p", cur.ss_sp);
        if (why[0]) {
            char m2[160];
            snprintf(m2, sizeof m2, "FAIL: %s", why);
            report(k, m2);
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
    for (int k = 0; k < N; k++)
        if (pipe(pipes[k])) return 2;
    pthread_t t;
    for (int k = 1; k < N; k++)
        pthread_create(&t, NULL, run, (void *)(long)k);
    run(0);
}
