/* SO_PEERCRED across a restore. The parent listens on $DIR/l.sock and
 * forks a child that connects to it; the parent accepts. Each end holds a
 * message from the other, unread. Both block in read() on their pipes.
 * On SIGUSR1 (SA_RESTART; the parent passes it on to the child) each
 * restarted read() returns and its task checks: the accepted end names
 * the child (the task that connected), the client end names the parent
 * (the task that listens), the queued message is there, and a new client
 * of the listener sees the parent too. Writes "OK main|child" or "FAIL
 * ..." to $RESULT.main / $RESULT.child. Ready when $READY holds "main
 * PID" and "child PID". */
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

static int p[2];
static pid_t child;
static struct sockaddr_un addr = {.sun_family = AF_UNIX};

static void on_usr1(int s) {
    (void)s;
    if (child > 0) kill(child, SIGUSR1);
    if (write(p[1], "x", 1) != 1) _exit(3);
}

static pid_t peer_of(int fd) {
    struct ucred c;
    socklen_t l = sizeof c;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &l)) return -1;
    return c.pid;
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

static void wait_and_check(const char *role, int sock, pid_t want_peer, const char *want_msg,
                           int listener) {
    for (;;) {
        char c, why[200] = "", buf[32] = "";
        ssize_t n = read(p[0], &c, 1);
        pid_t got = peer_of(sock);
        ssize_t m = recv(sock, buf, sizeof buf - 1, MSG_PEEK | MSG_DONTWAIT);
        if (n != 1)
            snprintf(why, sizeof why, "read=%zd errno=%d", n, errno);
        else if (got != want_peer)
            snprintf(why, sizeof why, "SO_PEERCRED pid %d, want %d", got, want_peer);
        else if (m != (ssize_t)strlen(want_msg) || strcmp(buf, want_msg))
            snprintf(why, sizeof why, "queued %zd %s", m, buf);
        if (!why[0] && listener >= 0) {
            int n2 = socket(AF_UNIX, SOCK_STREAM, 0);
            if (connect(n2, (struct sockaddr *)&addr, sizeof addr))
                snprintf(why, sizeof why, "new client: connect errno %d", errno);
            else if (peer_of(n2) != getpid())
                snprintf(why, sizeof why, "new client sees pid %d", peer_of(n2));
            int a = accept(listener, NULL, NULL);
            if (!why[0] && peer_of(a) != getpid())
                snprintf(why, sizeof why, "accepted new client names %d", peer_of(a));
            close(a);
            close(n2);
        }
        if (why[0]) {
            char msg[260];
            snprintf(msg, sizeof msg, "FAIL: %s", why);
            report(role, msg);
        } else
            report(role, "OK");
    }
}

int main(void) {
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s/l.sock", getenv("DIR"));
    unlink(addr.sun_path);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(l, (struct sockaddr *)&addr, sizeof addr) || listen(l, 8)) return 2;
    int ready = open(getenv("READY"), O_WRONLY | O_APPEND);
    dprintf(ready, "main %d\n", (int)getpid());
    child = fork();
    if (child == 0) {
        close(l);
        if (pipe(p)) _exit(4);
        int c = socket(AF_UNIX, SOCK_STREAM, 0);
        if (connect(c, (struct sockaddr *)&addr, sizeof addr)) _exit(5);
        if (send(c, "from-child", 10, 0) != 10) _exit(6);
        dprintf(ready, "child %d\n", (int)getpid());
        close(ready);
        wait_and_check("child", c, getppid(), "from-parent", -1);
    }
    if (pipe(p)) return 4;
    int s = accept(l, NULL, NULL);
    if (s < 0 || send(s, "from-parent", 11, 0) != 11) return 7;
    close(ready);
    wait_and_check("main", s, child, "from-child", l);
}
