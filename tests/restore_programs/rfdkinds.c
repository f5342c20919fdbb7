/* Descriptor kinds whose state the kernel keeps apart from the file:
 * an EFD_SEMAPHORE eventfd holding 3 (each read takes 1), a plain eventfd
 * holding 5, and a periodic timerfd (every 10 ms) that has expired and
 * is not read before the dump (its fdinfo then shows no time left). The
 * main thread blocks in read(); on SIGUSR1 (SA_RESTART) the handler
 * writes a byte to its pipe, and main checks each and writes "OK main"
 * or "FAIL main: why" to $RESULT.main. Ready when $READY holds
 * "main PID". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

static int p[2];

static void on_usr1(int sig) {
    (void)sig;
    if (write(p[1], "x", 1) != 1) _exit(3);
}

static void report(const char *what) {
    char path[512];
    snprintf(path, sizeof path, "%s.main", getenv("RESULT"));
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "%s main\n", what);
        fclose(f);
    }
}

static int check(int sem, int plain, int tfd, char *why, size_t n) {
    uint64_t v;
    for (int i = 0; i < 3; i++)
        if (read(sem, &v, 8) != 8 || v != 1)
            return snprintf(why, n, "semaphore read %d gave %llu", i, (unsigned long long)v);
    if (read(sem, &v, 8) != -1 || errno != EAGAIN)
        return snprintf(why, n, "semaphore not empty after 3 reads");
    if (read(plain, &v, 8) != 8 || v != 5)
        return snprintf(why, n, "plain eventfd gave %llu", (unsigned long long)v);
    if (read(tfd, &v, 8) != 8 || v < 1)
        return snprintf(why, n, "timerfd lost its pending expiration");
    struct pollfd pf = {.fd = tfd, .events = POLLIN};
    if (poll(&pf, 1, 1000) != 1)
        return snprintf(why, n, "timerfd did not fire again within 1 s");
    struct itimerspec its;
    if (timerfd_gettime(tfd, &its) || its.it_interval.tv_sec != 0 ||
        its.it_interval.tv_nsec != 10000000)
        return snprintf(why, n, "timerfd interval %ld.%09ld", (long)its.it_interval.tv_sec,
                        its.it_interval.tv_nsec);
    return 0;
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    if (pipe(p)) return 2;
    int sem = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
    int plain = eventfd(5, EFD_NONBLOCK);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct itimerspec its = {.it_value = {0, 10000000}, .it_interval = {0, 10000000}};
    if (sem < 0 || plain < 0 || tfd < 0 || timerfd_settime(tfd, 0, &its, NULL)) return 4;
    /* Expired, not read: no time left until a read rearms it. */
    struct pollfd pf = {.fd = tfd, .events = POLLIN};
    if (poll(&pf, 1, 1000) != 1) return 5;
    int r = open(getenv("READY"), O_WRONLY | O_APPEND);
    dprintf(r, "main %d\n", (int)getpid());
    close(r);
    for (;;) {
        char ch;
        if (read(p[0], &ch, 1) != 1) continue;
        char why[256] = "", msg[300];
        if (check(sem, plain, tfd, why, sizeof why))
            snprintf(msg, sizeof msg, "FAIL main: %s", why);
        else
            snprintf(msg, sizeof msg, "OK");
        report(msg);
    }
}
