/* A task that calls the vDSO through pointers it found at start (as C
 * libraries do), for restores where this kernel's vDSO lands elsewhere
 * and the old address holds a proxy.
 *
 * At start it reads its vDSO's symbol table (the image at
 * AT_SYSINFO_EHDR) and keeps the entries of clock_gettime, gettimeofday,
 * time, getcpu and clock_getres. It writes "main PID" to $READY and
 * blocks in read(). Each SIGUSR1 wakes it: it calls every kept entry many
 * times, compares the answers with the system calls', and adds a line
 * "OK moved" or "OK same" (where [vdso] is now, against the address at
 * start) or "FAIL why" to $RESULT.main, then blocks again. */
#define _GNU_SOURCE
#include <elf.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

typedef int (*gettime_fn)(clockid_t, struct timespec *);
typedef int (*tod_fn)(struct timeval *, void *);
typedef time_t (*time_fn)(time_t *);
typedef long (*getcpu_fn)(unsigned *, unsigned *, void *);

static int p[2];
static unsigned long base0;
static gettime_fn v_gettime, v_getres;
static tod_fn v_tod;
static time_fn v_time;
static getcpu_fn v_getcpu;

static void on_usr1(int s) {
    (void)s;
    if (write(p[1], "x", 1) != 1) _exit(3);
}

static void *lookup(const char *name) {
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)base0;
    const Elf64_Phdr *ph = (const Elf64_Phdr *)(base0 + eh->e_phoff);
    unsigned long load = 0;
    for (int i = 0; i < eh->e_phnum; i++)
        if (ph[i].p_type == PT_LOAD) { load = ph[i].p_vaddr; break; }
    const Elf64_Shdr *sh = (const Elf64_Shdr *)(base0 + eh->e_shoff);
    for (int i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_DYNSYM) continue;
        const Elf64_Sym *sym = (const Elf64_Sym *)(base0 + sh[i].sh_offset);
        const char *str = (const char *)(base0 + sh[sh[i].sh_link].sh_offset);
        for (size_t k = 0; k < sh[i].sh_size / sizeof *sym; k++)
            if (sym[k].st_shndx && !strcmp(str + sym[k].st_name, name))
                return (void *)(base0 + sym[k].st_value - load);
    }
    return NULL;
}

/* Where [vdso] starts now (0: none). */
static unsigned long vdso_now(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    unsigned long a = 0, s, e;
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, "[vdso]") && sscanf(line, "%lx-%lx", &s, &e) == 2) a = s;
    if (f) fclose(f);
    return a;
}

static long long ns(struct timespec t) { return t.tv_sec * 1000000000LL + t.tv_nsec; }

static const char *check(void) {
    static char why[256];
    clockid_t clocks[] = {CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_MONOTONIC_RAW};
    for (int c = 0; c < 4; c++) {
        long long last = 0;
        for (int i = 0; i < 2000; i++) {
            struct timespec v, k;
            if (v_gettime(clocks[c], &v)) return "clock_gettime failed";
            syscall(SYS_clock_gettime, clocks[c], &k);
            long long d = ns(k) - ns(v);
            if (d < 0 || d > 1000000000LL || ns(v) < last) {
                snprintf(why, sizeof why, "clock %d: vdso %lld, kernel %lld", (int)clocks[c], ns(v), ns(k));
                return why;
            }
            last = ns(v);
        }
        struct timespec r;
        if (v_getres(clocks[c], &r) || r.tv_sec != 0 || r.tv_nsec <= 0) return "clock_getres";
    }
    struct timeval tv;
    struct timespec k;
    if (v_tod(&tv, NULL)) return "gettimeofday failed";
    syscall(SYS_clock_gettime, CLOCK_REALTIME, &k);
    if (k.tv_sec - tv.tv_sec > 1 || tv.tv_sec > k.tv_sec) return "gettimeofday is off";
    time_t t = v_time(NULL);
    if (k.tv_sec - t > 1 || t > k.tv_sec + 1) return "time is off";
    unsigned cpu = ~0u, node = ~0u;
    if (v_getcpu(&cpu, &node, NULL) || cpu >= (unsigned)sysconf(_SC_NPROCESSORS_CONF))
        return "getcpu";
    return NULL;
}

int main(void) {
    base0 = getauxval(AT_SYSINFO_EHDR);
    if (!base0) return 2;
    v_gettime = (gettime_fn)lookup("__vdso_clock_gettime");
    v_getres = (gettime_fn)lookup("__vdso_clock_getres");
    v_tod = (tod_fn)lookup("__vdso_gettimeofday");
    v_time = (time_fn)lookup("__vdso_time");
    v_getcpu = (getcpu_fn)lookup("__vdso_getcpu");
    if (!v_gettime || !v_getres || !v_tod || !v_time || !v_getcpu) return 2;
    if (pipe(p)) return 1;
    struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_RESTART};
    sigaction(SIGUSR1, &sa, NULL);
    const char *err = check();
    if (err) { fprintf(stderr, "before the dump: %s\n", err); return 4; }
    char path[512];
    snprintf(path, sizeof path, "%s.main", getenv("RESULT"));
    FILE *r = fopen(getenv("READY"), "w");
    fprintf(r, "main %d\n", getpid());
    fclose(r);
    for (;;) {
        char c;
        if (read(p[0], &c, 1) != 1) return 5;
        err = check();
        char out[300];
        if (err) snprintf(out, sizeof out, "FAIL %s\n", err);
        else snprintf(out, sizeof out, "OK %s\n", vdso_now() == base0 ? "same" : "moved");
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd < 0 || write(fd, out, strlen(out)) < 0) return 6;
        close(fd);
    }
}
