/* POSIX timers for restore tests. Timer A: CLOCK_MONOTONIC, SIGRTMIN+1
 * with value 0x1234, 100 s then every 50 s. A timer made and deleted
 * leaves a gap in the ids. Timer B: CLOCK_REALTIME, SIGEV_NONE,
 * disarmed. Timer C: CLOCK_MONOTONIC, SIGRTMIN+2 to the worker thread
 * (SIGEV_THREAD_ID) with value 0x5678, every 5 ms; its handler counts
 * deliveries that reach the worker with that value. /proc/self/timers
 * is kept as it read after setup. The main thread blocks in read(); on
 * SIGUSR1 (SA_RESTART) the handler writes a byte to its pipe, and main
 * checks the timers and writes "OK main" or "FAIL main: why" to
 * $RESULT.main. Ready when $READY holds "main PID" and "worker TID". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int p[2];
static timer_t a, gap, b, c;
static volatile pid_t worker;
static volatile long good, bad;
static char before[4096];

static void on_usr1(int sig) {
    (void)sig;
    if (write(p[1], "x", 1) != 1) _exit(3);
}

static void on_tick(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)uc;
    if (gettid() == worker && si->si_value.sival_ptr == (void *)0x5678)
        good++;
    else
        bad++;
}

static void read_timers(char *buf, size_t len) {
    int fd = open("/proc/self/timers", O_RDONLY);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, len - 1);
    buf[n < 0 ? 0 : n] = 0;
    if (fd >= 0) close(fd);
}

static void *idle(void *arg) {
    (void)arg;
    worker = gettid();
    for (;;) pause();
    return NULL;
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

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_sigaction = on_tick;
    sa.sa_flags = SA_RESTART | SA_SIGINFO;
    sigaction(SIGRTMIN + 2, &sa, NULL);
    if (pipe(p)) return 2;
    pthread_t t;
    pthread_create(&t, NULL, idle, NULL);
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGRTMIN + 2);
    pthread_sigmask(SIG_BLOCK, &m, NULL); /* only the worker takes ticks */
    while (!worker) usleep(1000);
    struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN + 1};
    ev.sigev_value.sival_ptr = (void *)0x1234;
    struct itimerspec its = {.it_value = {100, 0}, .it_interval = {50, 0}};
    if (timer_create(CLOCK_MONOTONIC, &ev, &a) || timer_settime(a, 0, &its, NULL)) return 4;
    struct sigevent none = {.sigev_notify = SIGEV_NONE};
    if (timer_create(CLOCK_MONOTONIC, &none, &gap)) return 4;
    if (timer_create(CLOCK_REALTIME, &none, &b) || timer_delete(gap)) return 4;
    struct sigevent th = {.sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGRTMIN + 2};
    th.sigev_value.sival_ptr = (void *)0x5678;
    th._sigev_un._tid = worker;
    struct itimerspec fast = {.it_value = {0, 5000000}, .it_interval = {0, 5000000}};
    if (timer_create(CLOCK_MONOTONIC, &th, &c) || timer_settime(c, 0, &fast, NULL)) return 4;
    read_timers(before, sizeof before);
    int r = open(getenv("READY"), O_WRONLY | O_APPEND);
    dprintf(r, "main %d\nworker %d\n", (int)getpid(), (int)worker);
    close(r);
    for (;;) {
        char ch;
        ssize_t n = read(p[0], &ch, 1);
        char why[256] = "";
        char now[4096];
        read_timers(now, sizeof now);
        struct itimerspec va, vb, vc, vg;
        int ra = timer_gettime(a, &va), rb = timer_gettime(b, &vb);
        int rc = timer_gettime(c, &vc), rg = timer_gettime(gap, &vg);
        long g0 = good;
        for (int w = 0; w < 200 && good - g0 < 5; w++)
            usleep(10000);
        long ticks = good - g0;
        if (n != 1 || ch != 'x')
            snprintf(why, sizeof why, "read=%zd errno=%d", n, errno);
        else if (strcmp(before, now))
            snprintf(why, sizeof why, "/proc/self/timers differs");
        else if (ra || va.it_interval.tv_sec != 50 || va.it_value.tv_sec >= 100 ||
                 va.it_value.tv_sec < 60)
            snprintf(why, sizeof why, "timer A: %d interval %ld value %ld", ra,
                     (long)va.it_interval.tv_sec, (long)va.it_value.tv_sec);
        else if (rb || vb.it_value.tv_sec || vb.it_value.tv_nsec || vb.it_interval.tv_nsec)
            snprintf(why, sizeof why, "timer B: %d value %ld", rb, (long)vb.it_value.tv_sec);
        else if (rg == 0)
            snprintf(why, sizeof why, "the deleted timer exists again");
        else if (rc || vc.it_interval.tv_nsec != 5000000)
            snprintf(why, sizeof why, "timer C: %d interval %ld", rc, vc.it_interval.tv_nsec);
        else if (ticks < 5 || bad)
            snprintf(why, sizeof why, "timer C: %ld ticks in 100 ms, %ld wrong", ticks, bad);
        if (why[0]) {
            char msg[300];
            snprintf(msg, sizeof msg, "FAIL: %s", why);
            report(msg);
        } else
            report("OK");
    }
}
