/* Connections pending in a listener, for dump and restore tests. One task
 * listens on $DIR/l.sock (stream) and connects two clients it does not
 * accept: the first has sent "early-data", the second nothing. It blocks
 * in read(); on SIGUSR1 (SA_RESTART) the handler writes a byte to its
 * pipe; the restarted read() returns and the task accepts twice: the
 * first connection must hold "early-data" and reach the first client
 * back, the second must be empty. Writes "OK main" or "FAIL main: why"
 * to $RESULT.main. Ready when $READY holds "main PID". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int wake[2];

static void on_usr1(int s) {
    (void)s;
    if (write(wake[1], "x", 1) != 1) _exit(3);
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
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s/l.sock", getenv("DIR"));
    unlink(a.sun_path);
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    int c1 = socket(AF_UNIX, SOCK_STREAM, 0);
    int c2 = socket(AF_UNIX, SOCK_STREAM, 0);
    if (pipe(wake) || bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 4)) return 2;
    if (connect(c1, (struct sockaddr *)&a, sizeof a) || send(c1, "early-data", 10, 0) != 10)
        return 4;
    if (connect(c2, (struct sockaddr *)&a, sizeof a)) return 5;
    int r = open(getenv("READY"), O_WRONLY | O_APPEND);
    dprintf(r, "main %d\n", (int)getpid());
    close(r);
    char c;
    ssize_t n = read(wake[0], &c, 1);
    char why[200] = "", buf[32] = "";
    int s1 = accept4(l, NULL, NULL, SOCK_NONBLOCK);
    int s2 = accept4(l, NULL, NULL, SOCK_NONBLOCK);
    ssize_t m1 = s1 < 0 ? -1 : recv(s1, buf, sizeof buf - 1, 0);
    char e2;
    ssize_t m2 = s2 < 0 ? -2 : recv(s2, &e2, 1, 0);
    int e2errno = errno;
    if (n != 1)
        snprintf(why, sizeof why, "read=%zd errno=%d", n, errno);
    else if (s1 < 0 || s2 < 0)
        snprintf(why, sizeof why, "accept: %d %d errno %d", s1, s2, errno);
    else if (m1 != 10 || strncmp(buf, "early-data", 10))
        snprintf(why, sizeof why, "first connection held %zd bytes", m1);
    else if (m2 != -1 || e2errno != EAGAIN)
        snprintf(why, sizeof why, "second connection held %zd", m2);
    else {
        char back[8] = "";
        if (send(s1, "back", 4, 0) != 4 || recv(c1, back, 4, MSG_DONTWAIT) != 4 ||
            strncmp(back, "back", 4))
            snprintf(why, sizeof why, "the first client is not at the other end");
    }
    if (why[0]) {
        char msg[260];
        snprintf(msg, sizeof msg, "FAIL: %s", why);
        report(msg);
    } else
        report("OK");
    for (;;) pause();
}
