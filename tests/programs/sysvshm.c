/* System V shared memory in the host's ipc namespace, as postgres uses
 * it: a segment made, filled and kept attached (not removed, so it
 * outlives the task). Prints "READY SHMID ADDR". On SIGUSR1 it checks
 * the mapping at ADDR still shows the segment with its contents and
 * writes "OK" or "FAIL: why" to the file named by argv[1]. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <unistd.h>

#define SIZE (3 * 4096 + 100)

static volatile sig_atomic_t asked;
static void on_usr1(int s) { (void)s; asked = 1; }

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    setsid();
    signal(SIGUSR1, on_usr1);
    int id = shmget(IPC_PRIVATE, SIZE, IPC_CREAT | 0600);
    unsigned char *p = shmat(id, NULL, 0);
    if (id < 0 || p == (void *)-1) return 3;
    for (int i = 0; i < SIZE; i++) p[i] = (unsigned char)(i * 7 + 1);
    printf("READY %d %p\n", id, (void *)p);
    fflush(stdout);
    for (;;) {
        pause();
        if (!asked) continue;
        asked = 0;
        char why[128] = "";
        struct shmid_ds ds;
        if (shmctl(id, IPC_STAT, &ds))
            snprintf(why, sizeof why, "segment %d is gone", id);
        else if (ds.shm_nattch < 1)
            snprintf(why, sizeof why, "segment %d is not attached", id);
        for (int i = 0; !why[0] && i < SIZE; i++)
            if (p[i] != (unsigned char)(i * 7 + 1))
                snprintf(why, sizeof why, "byte %d is %d", i, p[i]);
        p[0] = 42; /* still writable */
        FILE *f = fopen(argv[1], "w");
        if (!f) continue;
        if (why[0]) fprintf(f, "FAIL: %s\n", why);
        else fprintf(f, "OK\n");
        fclose(f);
    }
}
