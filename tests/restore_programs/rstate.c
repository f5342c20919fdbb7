/* One task holding much per-task state for restore tests; after restore
 * it compares everything with what it saw before the dump.
 *
 * Memory: a private anonymous area with data at a fixed address, a
 * read-only one with data, a PROT_NONE one, a shared anonymous one, a
 * private file mapping with one page changed (copy on write) and one not,
 * a shared file mapping, grown brk with data. /proc/self/maps, auxv, the
 * exe link and the mm fields of /proc/self/stat must be as they were.
 * Registers: xmm8/xmm9 (and ymm10 with AVX) and r12-r15 hold patterns
 * across the blocking read() the task is dumped in.
 * Per task/thread: signal action, interval timer, rlimits, personality,
 * cwd, umask, name, dumpable, parent-death signal, rseq (still registered
 * at its address: registering again says EBUSY), robust list, tid address,
 * fd flags and offsets, credentials (uids, gids, groups; dropped last).
 *
 * $DIR: a directory it may use. On SIGUSR1 (SA_RESTART) the handler
 * writes a byte to a pipe; the restarted read() returns it and the task
 * writes "OK main" or "FAIL main: why" to $RESULT.main. Ready when $READY
 * holds "main PID" (both files are opened before the credentials drop). */
#define _GNU_SOURCE
#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/socket.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#define PG 4096
#define FIXED ((char *)0x5a5a00000000UL)

static int p[2];
static char why[512];
static char maps0[65536], auxv0[1024], exe0[512], stat0[1024], cwd0[512];
static size_t auxv0_len;
static char *ro, *none, *shared, *fpriv, *fshared, *brk0;
static void *robust0;
static size_t robust0_len;
static int *tidaddr0;
static int regfd, appfd;
/* A socketpair and a pipe, one end of each close-on-exec. */
static int sk[2], cp[2];

static void on_usr1(int s) {
    (void)s;
    if (write(p[1], "x", 1) != 1) _exit(3);
}
static void on_usr2(int s, siginfo_t *si, void *uc) { (void)s; (void)si; (void)uc; }
static void on_trap(int s) { (void)s; }

static size_t slurp(const char *path, char *buf, size_t len) {
    int fd = open(path, O_RDONLY);
    size_t n = 0;
    ssize_t r;
    while (fd >= 0 && n < len - 1 && (r = read(fd, buf + n, len - 1 - n)) > 0) n += r;
    buf[n] = 0;
    if (fd >= 0) close(fd);
    return n;
}

/* /proc/self/maps with the inode of shared anonymous memory left out:
 * a restore makes a new object, the one thing that may differ. */
static void read_maps(char *out, size_t len) {
    static char raw[65536];
    slurp("/proc/self/maps", raw, sizeof raw);
    size_t o = 0;
    for (char *l = strtok(raw, "\n"); l && o + 512 < len; l = strtok(NULL, "\n")) {
        char a[64], perm[8], off[16], dev[16];
        unsigned long ino;
        int name_at = 0;
        if (strstr(l, "/dev/zero (deleted)") &&
            sscanf(l, "%63s %7s %15s %15s %lu %n", a, perm, off, dev, &ino, &name_at) == 5)
            o += snprintf(out + o, len - o, "%s %s %s %s - %s\n", a, perm, off, dev, l + name_at);
        else
            o += snprintf(out + o, len - o, "%.400s\n", l);
    }
    out[o] = 0;
}

/* The mm fields of /proc/self/stat: start_code..start_stack (26-28) and
 * start_data..env_end (45-51). */
static void mm_fields(char *out, size_t len) {
    char s[2048];
    slurp("/proc/self/stat", s, sizeof s);
    char *f = strrchr(s, ')') + 2; /* field 3 */
    int n = 3;
    out[0] = 0;
    for (char *t = strtok(f, " "); t; t = strtok(NULL, " "), n++)
        if ((n >= 26 && n <= 28) || (n >= 45 && n <= 51)) {
            strncat(out, t, len - strlen(out) - 2);
            strcat(out, " ");
        }
}

static int fill(char *a, size_t len, int seed) {
    for (size_t i = 0; i < len; i++) a[i] = (char)(i * 7 + seed);
    return 0;
}
static int same(const char *a, size_t len, int seed) {
    for (size_t i = 0; i < len; i++)
        if (a[i] != (char)(i * 7 + seed)) return 0;
    return 1;
}

static int have_avx(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_AVX) || !(c & bit_OSXSAVE)) return 0;
    unsigned lo, hi;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 6) == 6;
}

static const uint64_t pat[8] = {0x1111222233334444ULL, 0x5555666677778888ULL,
                                0x99990000aaaabbbbULL, 0xccccddddeeeeffffULL,
                                0x0123456789abcdefULL, 0xfedcba9876543210ULL,
                                0x0f0f0f0f0f0f0f0fULL, 0xf0f0f0f0f0f0f0f0ULL};

/* read(fd, c, 1) with vector and callee-saved registers loaded before and
 * stored after the syscall instruction. */
static long read_keeping_regs(int fd, char *c, uint64_t *vec, uint64_t *gp, int avx) {
    long ret;
    if (avx)
        __asm__ volatile("vmovdqu (%[in]), %%xmm8\n\t"
                         "vmovdqu 16(%[in]), %%xmm9\n\t"
                         "vmovdqu 32(%[in]), %%ymm10\n\t"
                         "mov (%[g]), %%r12\n\tmov 8(%[g]), %%r13\n\t"
                         "mov 16(%[g]), %%r14\n\tmov 24(%[g]), %%r15\n\t"
                         "xor %%eax, %%eax\n\tsyscall\n\t"
                         "vmovdqu %%xmm8, (%[out])\n\t"
                         "vmovdqu %%xmm9, 16(%[out])\n\t"
                         "vmovdqu %%ymm10, 32(%[out])\n\t"
                         "mov %%r12, (%[g])\n\tmov %%r13, 8(%[g])\n\t"
                         "mov %%r14, 16(%[g])\n\tmov %%r15, 24(%[g])\n\t"
                         "vzeroupper"
                         : "=a"(ret)
                         : "D"((long)fd), "S"(c), "d"(1L), [in] "r"(pat), [out] "r"(vec), [g] "r"(gp)
                         : "rcx", "r11", "r12", "r13", "r14", "r15", "memory", "xmm8", "xmm9",
                           "xmm10");
    else
        __asm__ volatile("movdqu (%[in]), %%xmm8\n\t"
                         "movdqu 16(%[in]), %%xmm9\n\t"
                         "mov (%[g]), %%r12\n\tmov 8(%[g]), %%r13\n\t"
                         "mov 16(%[g]), %%r14\n\tmov 24(%[g]), %%r15\n\t"
                         "xor %%eax, %%eax\n\tsyscall\n\t"
                         "movdqu %%xmm8, (%[out])\n\t"
                         "movdqu %%xmm9, 16(%[out])\n\t"
                         "mov %%r12, (%[g])\n\tmov %%r13, 8(%[g])\n\t"
                         "mov %%r14, 16(%[g])\n\tmov %%r15, 24(%[g])"
                         : "=a"(ret)
                         : "D"((long)fd), "S"(c), "d"(1L), [in] "r"(pat), [out] "r"(vec), [g] "r"(gp)
                         : "rcx", "r11", "r12", "r13", "r14", "r15", "memory", "xmm8", "xmm9");
    return ret;
}

#define CHECK(cond, ...)                                  \
    do {                                                  \
        if (!why[0] && !(cond)) snprintf(why, sizeof why, __VA_ARGS__); \
    } while (0)

static void check(int avx, long n, char c, uint64_t *vec, uint64_t *gp) {
    static char maps1[65536], auxv1[1024], buf[1024];
    CHECK(n == 1 && c == 'x', "read=%ld errno=%d", n, errno);
    CHECK(!memcmp(vec, pat, avx ? 64 : 32), "vector registers changed");
    CHECK(gp[0] == 12 && gp[1] == 13 && gp[2] == 14 && gp[3] == 15, "r12-r15 changed");
    read_maps(maps1, sizeof maps1);
    if (!why[0] && strcmp(maps0, maps1)) {
        /* Name the first line that differs. */
        const char *a = maps0, *b = maps1;
        while (*a && *a == *b) a++, b++;
        while (a > maps0 && a[-1] != '\n') a--, b--;
        snprintf(why, sizeof why, "/proc/self/maps: %.*s became %.*s", (int)strcspn(a, "\n"), a,
                 (int)strcspn(b, "\n"), b);
    }
    size_t al = slurp("/proc/self/auxv", auxv1, sizeof auxv1);
    CHECK(al == auxv0_len && !memcmp(auxv0, auxv1, al), "auxv differs");
    memset(buf, 0, sizeof buf);
    CHECK(readlink("/proc/self/exe", buf, sizeof buf - 1) > 0 && !strcmp(buf, exe0), "exe %.100s",
          buf);
    mm_fields(buf, sizeof buf);
    CHECK(!strcmp(buf, stat0), "mm fields %.200s, were %.200s", buf, stat0);
    CHECK(same(FIXED, 3 * PG, 1), "private anonymous data");
    CHECK(same(ro, PG, 2), "read-only data");
    CHECK(same(shared, 2 * PG, 3), "shared anonymous data");
    CHECK(same(fpriv, PG, 4) && fpriv[PG] == 'F', "private file mapping");
    CHECK(fshared[0] == 'S' && fshared[1] == 'F', "shared file mapping");
    CHECK(sbrk(0) == brk0 + 2 * PG && same(brk0, 2 * PG, 5), "brk");
    struct sigaction sa;
    sigaction(SIGUSR2, NULL, &sa);
    CHECK(sa.sa_sigaction == on_usr2 && (sa.sa_flags & (SA_SIGINFO | SA_ONSTACK | SA_NODEFER)) ==
              (SA_SIGINFO | SA_ONSTACK | SA_NODEFER) && sigismember(&sa.sa_mask, SIGINT) &&
              !sigismember(&sa.sa_mask, SIGTERM),
          "SIGUSR2 action");
    /* SIGTRAP is what a debugger-less injector would disturb first. */
    sigaction(SIGTRAP, NULL, &sa);
    CHECK(sa.sa_handler == on_trap, "SIGTRAP action");
    sigaction(SIGURG, NULL, &sa);
    CHECK(sa.sa_handler == SIG_IGN, "SIGURG ignored");
    struct itimerval it;
    getitimer(ITIMER_REAL, &it);
    CHECK(it.it_interval.tv_sec == 3600 && it.it_value.tv_sec > 3000, "itimer %ld/%ld",
          (long)it.it_interval.tv_sec, (long)it.it_value.tv_sec);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    CHECK(rl.rlim_cur == 777, "RLIMIT_NOFILE %lu", (unsigned long)rl.rlim_cur);
    getrlimit(RLIMIT_CORE, &rl);
    CHECK(rl.rlim_cur == 12345 && rl.rlim_max == 23456, "RLIMIT_CORE");
    CHECK(personality(0xffffffff) == ADDR_NO_RANDOMIZE, "personality %x", personality(0xffffffff));
    CHECK(getcwd(buf, sizeof buf) && !strcmp(buf, cwd0), "cwd %.100s", buf);
    mode_t um = umask(0);
    umask(um);
    CHECK(um == 027, "umask %o", um);
    prctl(PR_GET_NAME, buf);
    CHECK(!strcmp(buf, "rstate-main"), "name %.20s", buf);
    int sig = 0;
    prctl(PR_GET_PDEATHSIG, &sig);
    CHECK(sig == SIGWINCH, "pdeath signal %d", sig);
    /* rseq: glibc registered it; the same registration again is EBUSY. */
    extern const ptrdiff_t __rseq_offset __attribute__((weak));
    extern const unsigned int __rseq_size __attribute__((weak));
    if (&__rseq_offset && __rseq_size) {
        char *tp;
        __asm__("mov %%fs:0, %0" : "=r"(tp));
        errno = 0;
        long r = syscall(SYS_rseq, tp + __rseq_offset, __rseq_size < 32 ? 32 : __rseq_size, 0,
                         0x53053053);
        CHECK(r == -1 && errno == EBUSY, "rseq: %ld errno %d", r, errno);
    }
    void *head;
    size_t hl;
    syscall(SYS_get_robust_list, 0, &head, &hl);
    CHECK(head == robust0 && hl == robust0_len, "robust list %p", head);
    int *ta = NULL;
    prctl(PR_GET_TID_ADDRESS, &ta);
    CHECK(ta == tidaddr0, "tid address %p was %p", (void *)ta, (void *)tidaddr0);
    CHECK(lseek(regfd, 0, SEEK_CUR) == 5, "offset %ld", (long)lseek(regfd, 0, SEEK_CUR));
    CHECK(fcntl(regfd, F_GETFD) == FD_CLOEXEC, "fd flags %d", fcntl(regfd, F_GETFD));
    CHECK((fcntl(appfd, F_GETFL) & (O_APPEND | O_NONBLOCK | O_ACCMODE)) ==
              (O_APPEND | O_NONBLOCK | O_WRONLY),
          "status flags %x", fcntl(appfd, F_GETFL));
    CHECK((fcntl(p[0], F_GETFL) & O_NONBLOCK) == 0, "pipe flags");
    CHECK(fcntl(sk[0], F_GETFD) == FD_CLOEXEC && fcntl(sk[1], F_GETFD) == 0,
          "socket fd flags %d %d", fcntl(sk[0], F_GETFD), fcntl(sk[1], F_GETFD));
    CHECK((fcntl(sk[0], F_GETFL) & O_NONBLOCK) && !(fcntl(sk[1], F_GETFL) & O_NONBLOCK),
          "socket status flags %x %x", fcntl(sk[0], F_GETFL), fcntl(sk[1], F_GETFL));
    CHECK(fcntl(cp[0], F_GETFD) == 0 && fcntl(cp[1], F_GETFD) == FD_CLOEXEC,
          "pipe fd flags %d %d", fcntl(cp[0], F_GETFD), fcntl(cp[1], F_GETFD));
    uid_t r, e, s;
    gid_t gr, ge, gs, groups[8];
    getresuid(&r, &e, &s);
    getresgid(&gr, &ge, &gs);
    int ng = getgroups(8, groups);
    CHECK(r == 1000 && e == 1001 && s == 1002, "uids %d %d %d", r, e, s);
    CHECK(gr == 2000 && ge == 2001 && gs == 2002, "gids %d %d %d", gr, ge, gs);
    CHECK(ng == 2 && groups[0] == 3000 && groups[1] == 3001, "groups");
    CHECK(prctl(PR_GET_DUMPABLE) == 1, "dumpable");
    CHECK(prctl(PR_CAPBSET_READ, 25) == 0 && prctl(PR_CAPBSET_READ, 22) == 0 &&
              prctl(PR_CAPBSET_READ, 5) == 1 && prctl(PR_CAPBSET_READ, 21) == 1,
          "bounding set");
}

int main(void) {
    const char *dir = getenv("DIR");
    char path[512];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_usr2;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigaddset(&sa.sa_mask, SIGINT);
    sigaction(SIGUSR2, &sa, NULL);
    signal(SIGTRAP, on_trap);
    signal(SIGURG, SIG_IGN);
    if (pipe(p)) return 2;

    if (mmap(FIXED, 3 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
             -1, 0) != FIXED)
        return 4;
    fill(FIXED, 3 * PG, 1);
    ro = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    fill(ro, PG, 2);
    mprotect(ro, PG, PROT_READ);
    none = mmap(NULL, 2 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    shared = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    fill(shared, 2 * PG, 3);
    snprintf(path, sizeof path, "%s/mapped", dir);
    int mf = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    char page[PG];
    memset(page, 'F', PG);
    for (int i = 0; i < 3; i++)
        if (write(mf, page, PG) != PG) return 5;
    fpriv = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, mf, 0);
    fill(fpriv, PG, 4); /* first page copied on write, second from the file */
    fshared = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, mf, 2 * PG);
    fshared[0] = 'S';
    close(mf);
    brk0 = sbrk(0);
    if (sbrk(2 * PG) == (void *)-1) return 6;
    fill(brk0, 2 * PG, 5);
    if (none == MAP_FAILED || shared == MAP_FAILED || fpriv == MAP_FAILED || fshared == MAP_FAILED)
        return 7;

    struct itimerval it = {.it_interval = {3600, 0}, .it_value = {3600, 0}};
    setitimer(ITIMER_REAL, &it, NULL);
    signal(SIGALRM, SIG_IGN);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = 777; /* keep this machine's hard limit */
    if (setrlimit(RLIMIT_NOFILE, &rl)) {
        perror("setrlimit");
        return 1;
    }
    rl = (struct rlimit){12345, 23456};
    if (setrlimit(RLIMIT_CORE, &rl)) {
        perror("setrlimit");
        return 1;
    }
    personality(ADDR_NO_RANDOMIZE);
    snprintf(path, sizeof path, "%s/cwd", dir);
    mkdir(path, 0755);
    if (chdir(path)) return 8;
    getcwd(cwd0, sizeof cwd0);
    umask(027);
    prctl(PR_SET_NAME, "rstate-main");
    /* A smaller bounding set (CAP_SYS_TIME = 25, CAP_SYS_BOOT = 22 out). */
    if (prctl(PR_CAPBSET_DROP, 25) || prctl(PR_CAPBSET_DROP, 22)) return 10;
    regfd = open("reg", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (write(regfd, "0123456789", 10) != 10) return 9;
    lseek(regfd, 5, SEEK_SET);
    appfd = open("app", O_WRONLY | O_CREAT | O_APPEND | O_NONBLOCK, 0644);
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sk) || pipe2(cp, O_CLOEXEC)) return 9;
    fcntl(sk[0], F_SETFD, FD_CLOEXEC);
    fcntl(sk[0], F_SETFL, O_NONBLOCK);
    fcntl(cp[0], F_SETFD, 0);
    snprintf(path, sizeof path, "%s.main", getenv("RESULT"));
    int res = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int ready = open(getenv("READY"), O_WRONLY | O_APPEND);
    syscall(SYS_get_robust_list, 0, &robust0, &robust0_len);
    prctl(PR_GET_TID_ADDRESS, &tidaddr0);

    /* Credentials last: the task keeps running as another user. */
    gid_t groups[2] = {3000, 3001};
    if (setgroups(2, groups) || setresgid(2000, 2001, 2002) || setresuid(1000, 1001, 1002))
        return 10;
    prctl(PR_SET_DUMPABLE, 1);
    prctl(PR_SET_PDEATHSIG, SIGWINCH); /* a credential change clears it */

    /* One check first, so that whatever it allocates lazily (malloc's
     * heap) is in place before the layout is taken. */
    int avx = have_avx();
    uint64_t v0[8], g0[4] = {12, 13, 14, 15};
    memcpy(v0, pat, sizeof v0);
    check(avx, 1, 'x', v0, g0);
    read_maps(maps0, sizeof maps0);
    auxv0_len = slurp("/proc/self/auxv", auxv0, sizeof auxv0);
    readlink("/proc/self/exe", exe0, sizeof exe0 - 1);
    mm_fields(stat0, sizeof stat0);
    char line[32]; /* not dprintf: it allocates, and the heap is taken */
    int ll = snprintf(line, sizeof line, "main %d\n", (int)getpid());
    if (write(ready, line, ll) != ll) return 12;
    close(ready);
    for (;;) {
        char c = 0;
        uint64_t vec[8] = {0}, gp[4] = {12, 13, 14, 15};
        long n = read_keeping_regs(p[0], &c, vec, gp, avx);
        why[0] = 0;
        check(avx, n, c, vec, gp);
        char msg[600];
        int l = why[0] ? snprintf(msg, sizeof msg, "FAIL main: %s\n", why)
                       : snprintf(msg, sizeof msg, "OK main\n");
        if (pwrite(res, msg, l, 0) != l) return 11;
    }
}
