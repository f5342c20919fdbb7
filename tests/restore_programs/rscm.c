/* Files in flight (SCM_RIGHTS) for dump and restore tests. One task
 * holds a pipe and a seqpacket socketpair; three messages wait in the
 * pair's queue: "plain-1", "with-fd" passing the pipe's read end (which
 * the task keeps too), "plain-3". The task blocks in read() on another
 * pipe. On SIGUSR1 (SA_RESTART) the handler writes a byte to it; the
 * restarted read() returns and the task takes the three messages: they
 * must come in order, the second with one descriptor that is the same
 * pipe (what is written to the kept write end comes out of it). Writes
 * "OK main" or "FAIL main: why" to $RESULT.main. Ready when $READY holds
 * "main PID". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scm.h"

/* Takes one message; returns its length, and the passed fd (or -1). */
static ssize_t take(int sk, char *buf, size_t len, int *fd) {
    struct iovec iov = {.iov_base = buf, .iov_len = len - 1};
    union {
        char b[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } u;
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
                       .msg_controllen = sizeof u.b};
    ssize_t n = recvmsg(sk, &m, MSG_DONTWAIT);
    *fd = -1;
    if (n >= 0) buf[n] = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); n >= 0 && c; c = CMSG_NXTHDR(&m, c))
        if (c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
            memcpy(fd, CMSG_DATA(c), sizeof(int));
        else if (c->cmsg_type == SCM_RIGHTS)
            *fd = -2; /* more than one */
    return n;
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    int pp[2], sp[2];
    if (pipe(wake) || pipe(pp) || socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp)) return 2;
    if (send_msg(sp[0], "plain-1", -1) || send_msg(sp[0], "with-fd", pp[0]) ||
        send_msg(sp[0], "plain-3", -1))
        return 3;
    int r = open(getenv("READY"), O_WRONLY | O_APPEND);
    dprintf(r, "main %d\n", (int)getpid());
    close(r);
    char c;
    ssize_t n = read(wake[0], &c, 1);
    char why[200] = "", b1[32], b2[32], b3[32];
    int f1, f2, f3;
    ssize_t n1 = take(sp[1], b1, sizeof b1, &f1);
    ssize_t n2 = take(sp[1], b2, sizeof b2, &f2);
    ssize_t n3 = take(sp[1], b3, sizeof b3, &f3);
    struct stat s_kept, s_got;
    if (n != 1)
        snprintf(why, sizeof why, "read=%zd errno=%d", n, errno);
    else if (n1 != 7 || strcmp(b1, "plain-1") || f1 != -1)
        snprintf(why, sizeof why, "first message %zd %s fd %d", n1, n1 > 0 ? b1 : "", f1);
    else if (n2 != 7 || strcmp(b2, "with-fd") || f2 < 0)
        snprintf(why, sizeof why, "second message %zd %s fd %d", n2, n2 > 0 ? b2 : "", f2);
    else if (n3 != 7 || strcmp(b3, "plain-3") || f3 != -1)
        snprintf(why, sizeof why, "third message %zd %s fd %d", n3, n3 > 0 ? b3 : "", f3);
    else if (fstat(pp[0], &s_kept) || fstat(f2, &s_got) || s_kept.st_ino != s_got.st_ino)
        snprintf(why, sizeof why, "the passed fd is not the pipe");
    else {
        char got[8] = "";
        if (write(pp[1], "ping", 4) != 4 || read(f2, got, 4) != 4 || strncmp(got, "ping", 4))
            snprintf(why, sizeof why, "nothing came through the passed fd");
    }
    if (why[0]) {
        char msg[260];
        snprintf(msg, sizeof msg, "FAIL: %s", why);
        report(msg);
    } else
        report("OK");
    for (;;) pause();
}
