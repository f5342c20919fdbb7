/* Files only in flight (SCM_RIGHTS): passed in a queued message, then
 * closed by the task, so that no task holds them at dump. One task
 * holds a seqpacket socketpair whose queue has four messages:
 *   "reg"  passing a regular file of $DIR (read-write, holding
 *          "regular-data", its position at 3);
 *   "pipe" passing a pipe's read end (the task keeps the write end;
 *          "queued" waits in the pipe);
 *   "memfd" passing a memfd holding "memfd-data";
 *   "sock" passing one end of a stream socketpair (the task keeps the
 *          other end; "in-sock" waits in the passed end's queue).
 * The task blocks in read() on another pipe. On SIGUSR1 (SA_RESTART) the
 * handler writes a byte to it; the restarted read() returns and the task
 * takes the four messages and checks each file: contents, position,
 * and that the pipe and the socket still reach the ends it kept.
 * Writes "OK main" or "FAIL: why main" to $RESULT.main. Ready when
 * $READY holds "main PID". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scm.h"

/* Takes one message that must be `text` with one descriptor: returns
 * the descriptor, or -1 with `why` filled. */
static int take(int sk, const char *text, char *why, size_t wl) {
    char buf[32];
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf - 1};
    union {
        char b[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } u;
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
                       .msg_controllen = sizeof u.b};
    ssize_t n = recvmsg(sk, &m, MSG_DONTWAIT);
    int fd = -1;
    if (n < 0) {
        snprintf(why, wl, "no message %s: errno %d", text, errno);
        return -1;
    }
    buf[n] = 0;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    if (c && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
        memcpy(&fd, CMSG_DATA(c), sizeof(int));
    if (strcmp(buf, text) || fd < 0) {
        snprintf(why, wl, "message %s: got %s with fd %d", text, buf, fd);
        return -1;
    }
    return fd;
}

static int reads(int fd, const char *want, char *why, size_t wl, const char *what) {
    char got[32] = "";
    size_t n = strlen(want);
    ssize_t r = read(fd, got, n);
    if (r != (ssize_t)n || memcmp(got, want, n)) {
        snprintf(why, wl, "%s: read %zd bytes \"%s\", want \"%s\"", what, r, r > 0 ? got : "",
                 want);
        return -1;
    }
    return 0;
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    int pp[2], sp[2], ss[2];
    if (pipe(wake) || pipe(pp) || socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp) ||
        socketpair(AF_UNIX, SOCK_STREAM, 0, ss))
        return 2;
    char path[512];
    snprintf(path, sizeof path, "%s/passed", getenv("DIR"));
    int reg = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (reg < 0 || write(reg, "regular-data", 12) != 12 || lseek(reg, 3, SEEK_SET) != 3) return 4;
    int mfd = memfd_create("passed-memfd", 0);
    if (mfd < 0 || write(mfd, "memfd-data", 10) != 10 || lseek(mfd, 0, SEEK_SET) != 0) return 5;
    if (write(pp[1], "queued", 6) != 6 || write(ss[0], "in-sock", 7) != 7) return 6;
    /* Each passed file closed once sent: only in flight then. */
    if (send_msg(sp[0], "reg", reg) || close(reg) || send_msg(sp[0], "pipe", pp[0]) ||
        close(pp[0]) || send_msg(sp[0], "memfd", mfd) || close(mfd) ||
        send_msg(sp[0], "sock", ss[1]) || close(ss[1]))
        return 7;
    int r = open(getenv("READY"), O_WRONLY | O_APPEND);
    dprintf(r, "main %d\n", (int)getpid());
    close(r);
    char c;
    ssize_t n = read(wake[0], &c, 1);
    char why[200] = "";
    int f;
    if (n != 1)
        snprintf(why, sizeof why, "read=%zd errno=%d", n, errno);
    else if ((f = take(sp[1], "reg", why, sizeof why)) < 0)
        ;
    else if (lseek(f, 0, SEEK_CUR) != 3)
        snprintf(why, sizeof why, "reg: position %ld, want 3", (long)lseek(f, 0, SEEK_CUR));
    else if (reads(f, "ular-data", why, sizeof why, "reg"))
        ;
    else if ((f = take(sp[1], "pipe", why, sizeof why)) < 0)
        ;
    else if (reads(f, "queued", why, sizeof why, "pipe"))
        ;
    else if (write(pp[1], "more", 4) != 4 || reads(f, "more", why, sizeof why, "pipe after"))
        ;
    else if ((f = take(sp[1], "memfd", why, sizeof why)) < 0)
        ;
    else if (reads(f, "memfd-data", why, sizeof why, "memfd"))
        ;
    else if ((f = take(sp[1], "sock", why, sizeof why)) < 0)
        ;
    else if (reads(f, "in-sock", why, sizeof why, "sock"))
        ;
    else if (write(ss[0], "again", 5) != 5 || reads(f, "again", why, sizeof why, "sock after"))
        ;
    if (why[0]) {
        char msg[260];
        snprintf(msg, sizeof msg, "FAIL: %s", why);
        report(msg);
    } else
        report("OK");
    for (;;) pause();
}
