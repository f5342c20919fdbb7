/* What the SCM_RIGHTS restore programs (rscm.c, rscmonly.c) share: the
 * SIGUSR1 wake-up through a pipe, sending a message with one passed
 * descriptor (or none: fd -1), and writing the result to $RESULT.main. */
#ifndef SCM_H
#define SCM_H
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int wake[2];

static void on_usr1(int s) {
    (void)s;
    if (write(wake[1], "x", 1) != 1) _exit(3);
}

static int send_msg(int sk, const char *text, int fd) {
    struct iovec iov = {.iov_base = (void *)text, .iov_len = strlen(text)};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        m.msg_control = u.buf;
        m.msg_controllen = sizeof u.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    return sendmsg(sk, &m, 0) == (ssize_t)strlen(text) ? 0 : -1;
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

#endif
