/* A deleted device node held open (a daemon's /dev/null after /dev was
 * repopulated): the task makes $DIR/null (char 1:3), opens it, removes
 * it and waits in read() on a pipe. On SIGUSR1 (SA_RESTART) it checks
 * that its fd is still a char device 1:3 that takes writes and reads as
 * empty, and that no file was left at the path. Writes "OK main" or
 * "FAIL main: why" to $RESULT.main. Ready when $READY holds "main PID". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static int wake[2];

static void on_usr1(int s) {
    (void)s;
    if (write(wake[1], "x", 1) != 1) _exit(3);
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    char path[512];
    snprintf(path, sizeof path, "%s/null", getenv("DIR"));
    if (pipe(wake) || mknod(path, S_IFCHR | 0666, makedev(1, 3))) return 2;
    int fd = open(path, O_RDWR);
    if (fd < 0 || unlink(path)) return 3;
    int r = open(getenv("READY"), O_WRONLY | O_APPEND);
    dprintf(r, "main %d\n", (int)getpid());
    close(r);
    char c;
    ssize_t n = read(wake[0], &c, 1);
    char why[200] = "";
    struct stat st;
    if (n != 1)
        snprintf(why, sizeof why, "read=%zd errno=%d", n, errno);
    else if (fstat(fd, &st))
        snprintf(why, sizeof why, "fstat: %s", strerror(errno));
    else if (!S_ISCHR(st.st_mode) || major(st.st_rdev) != 1 || minor(st.st_rdev) != 3)
        snprintf(why, sizeof why, "mode %o rdev %u:%u", st.st_mode, major(st.st_rdev),
                 minor(st.st_rdev));
    else if (st.st_nlink != 0)
        snprintf(why, sizeof why, "still linked (%lu links)", (unsigned long)st.st_nlink);
    else if (write(fd, "gone", 4) != 4 || read(fd, &c, 1) != 0)
        snprintf(why, sizeof why, "does not act as /dev/null");
    else if (access(path, F_OK) == 0)
        snprintf(why, sizeof why, "a file is left at %s", path);
    char out[512];
    snprintf(out, sizeof out, "%s.main", getenv("RESULT"));
    FILE *f = fopen(out, "w");
    if (f) {
        if (why[0])
            fprintf(f, "FAIL main: %s\n", why);
        else
            fprintf(f, "OK main\n");
        fclose(f);
    }
    return 0;
}
