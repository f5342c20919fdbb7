/* The descriptor table comes back as it was, and only it: /dev/null
 * held at scattered numbers (gaps of one, of hundreds, one past 4,096,
 * or the highest the hard open-files limit allows where it is lower)
 * beside stdio and a pipe. Before the dump the task lists /proc/self/fd;
 * the main thread blocks in read(); on SIGUSR1 (SA_RESTART) the handler
 * writes a byte to the pipe, main lists /proc/self/fd again and writes
 * "OK main" or "FAIL main: why" to $RESULT.main. A descriptor the
 * restore leaves open in the task (its own, or one of the image's
 * numbers it failed to place) shows as a difference. Ready when $READY
 * holds "main PID". */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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

/* The open descriptors, in a string "0 1 2 ...", without the listing's own. */
static void list(char *out, size_t n) {
    DIR *d = opendir("/proc/self/fd");
    int own = d ? dirfd(d) : -1;
    char seen[8192] = {0};
    struct dirent *e;
    while (d && (e = readdir(d))) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd != own && fd < 8192) seen[fd] = 1;
    }
    if (d) closedir(d);
    size_t at = 0;
    out[0] = 0;
    for (int fd = 0; fd < 8192 && at < n; fd++)
        if (seen[fd]) at += snprintf(out + at, n - at, "%d ", fd);
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    if (pipe(p)) return 2;
    int null = open("/dev/null", O_RDONLY);
    /* A soft limit of 1,024 (a common default) refuses 4,097: take the
     * hard limit, which needs no privilege. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl)) return 4;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    int high = rl.rlim_cur > 4097 ? 4097 : (int)rl.rlim_cur - 1;
    const int at[] = {9, 11, 12, 300, 301, high};
    for (unsigned i = 0; i < sizeof at / sizeof at[0]; i++)
        if (dup2(null, at[i]) != at[i]) return 4;
    static char before[4096], after[4096];
    int r = open(getenv("READY"), O_WRONLY | O_APPEND);
    dprintf(r, "main %d\n", (int)getpid());
    close(r);
    list(before, sizeof before);
    for (;;) {
        char ch;
        if (read(p[0], &ch, 1) != 1) continue;
        char msg[9000];
        list(after, sizeof after);
        if (strcmp(before, after))
            snprintf(msg, sizeof msg, "FAIL main: fds [%s] before, [%s] after", before, after);
        else
            snprintf(msg, sizeof msg, "OK");
        report(msg);
    }
}
