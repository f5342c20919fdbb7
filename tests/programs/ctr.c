/* A small container, linked statically so that it runs on a root fs that
 * holds nothing else.
 *
 *   ctr launch ROOTFS [net]   (on the host) clones /init of ROOTFS in new
 *       pid, mount, uts, ipc and (unless "net" says to share it) network
 *       namespaces: the root fs is bound and pivoted to, a tmpfs is on /run
 *       holding /run/marker, proc is on /proc, /kern is sysfs's kernel/
 *       directory alone (a part of a file system whose whole is mounted
 *       nowhere in the container), the hostname is "crit-ctr".
 *       Prints the container init's host pid and exits. With CTR_EXT set
 *       to a host directory, it is bound on /ext of the container (an
 *       external mount), where init binds a listening socket, ctr.sock;
 *       with CTR_EXT_SUB set too, a tmpfs is mounted on /ext/sub.
 *   /init                     (pid 1 inside) sets up System V shm, a
 *       semaphore set and a message queue, starts a child, and counts,
 *       writing the count to /tmp/count. It writes /ready when set up.
 *       It keeps /proc/self/status open (its /proc/1/status), the child
 *       its own and its parent's /proc/1/stat.
 *
 * On SIGUSR1 each task checks its own state and writes "OK ..." or
 * "FAIL: why" to /result.init (and /result.child): pids, hostname, the
 * tmpfs file, the IPC objects' contents, the /proc files (still naming
 * the task by its pid in the container), and that CLOCK_MONOTONIC and
 * CLOCK_BOOTTIME went on from where they were (no jump across a dump and
 * restore). The message queue is read by the check, so check once. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SHM_SIZE (64 * 1024 + 100)
#define TMPFS_MAGIC 0x01021994
#define SYSFS_MAGIC 0x62656572

static char rootfs[4096];
static int share_net;

static void die(const char *what)
{
	perror(what);
	_exit(1);
}

static int child_main(void *arg)
{
	(void)arg;
	setsid();
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		die("make / private");
	if (mount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL))
		die("bind rootfs");
	if (chdir(rootfs))
		die("chdir rootfs");
	mkdir("proc", 0755);
	mkdir("run", 0755);
	mkdir("tmp", 01777);
	mkdir(".old", 0700);
	if (mount("tmpfs", "run", "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=755"))
		die("mount tmpfs");
	int m = open("run/marker", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (m < 0 || write(m, "held-in-tmpfs\n", 14) != 14)
		die("marker");
	close(m);
	if (mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
		die("mount proc");
	mkdir("kern", 0755);
	if (mount("sysfs", ".old", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
		die("mount sysfs");
	if (mount(".old/kernel", "kern", NULL, MS_BIND, NULL))
		die("bind sysfs kernel/");
	if (umount2(".old", MNT_DETACH))
		die("umount sysfs");
	const char *ext = getenv("CTR_EXT");
	if (ext) {
		mkdir("ext", 0755);
		if (mount(ext, "ext", NULL, MS_BIND, NULL))
			die("bind CTR_EXT");
		/* A mount inside it: its mountpoint is in the host directory. */
		if (getenv("CTR_EXT_SUB")) {
			mkdir("ext/sub", 0755);
			if (mount("tmpfs", "ext/sub", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m"))
				die("mount CTR_EXT_SUB");
		}
	}
	if (sethostname("crit-ctr", 8))
		die("sethostname");
	if (syscall(SYS_pivot_root, ".", ".old"))
		die("pivot_root");
	if (umount2(".old", MNT_DETACH))
		die("umount old root");
	rmdir(".old");
	if (chdir("/"))
		die("chdir /");
	char *argv[] = { "init", NULL };
	execv("/init", argv);
	die("exec /init");
	return 1;
}

static int launch(void)
{
	static char stack[256 * 1024];
	int flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | SIGCHLD;
	if (!share_net)
		flags |= CLONE_NEWNET;
	pid_t p = clone(child_main, stack + sizeof(stack), flags, NULL);
	if (p < 0)
		die("clone");
	printf("%d\n", p);
	return 0;
}

/* ---- inside the container ---- */

static volatile sig_atomic_t check_asked;
static int shm_id, sem_id, msg_id;
static pid_t child_pid;
static struct timespec last_mono, last_boot;
static int own_status = -1, parent_stat = -1;

/* Whether the /proc file open at `fd` starts with or holds `want`. */
static int proc_has(int fd, const char *want)
{
	char buf[4096];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	return strstr(buf, want) != NULL;
}
static volatile unsigned long count;

static void on_usr1(int s)
{
	(void)s;
	check_asked = 1;
}

static void put(const char *file, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	char tmp[64];
	snprintf(tmp, sizeof(tmp), "%s.tmp", file);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return;
	if (write(fd, buf, n) != n) {
		close(fd);
		return;
	}
	close(fd);
	rename(tmp, file);
}

static double gap(struct timespec a, struct timespec b)
{
	return (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
}

/* The checks of pid 1; returns a reason or NULL. */
static const char *check_init(struct timespec mono, struct timespec boot, char *why, size_t n)
{
	if (getpid() != 1)
		return snprintf(why, n, "pid is %d, not 1", getpid()), why;
	char host[64] = "";
	gethostname(host, sizeof(host));
	if (strcmp(host, "crit-ctr"))
		return snprintf(why, n, "hostname is '%s'", host), why;
	char buf[64] = "";
	int fd = open("/run/marker", O_RDONLY);
	if (fd < 0 || read(fd, buf, sizeof(buf) - 1) != 14 || strcmp(buf, "held-in-tmpfs\n"))
		return snprintf(why, n, "/run/marker lost (%s)", buf), why;
	close(fd);
	struct statfs sf;
	if (statfs("/run", &sf) || sf.f_type != TMPFS_MAGIC)
		return snprintf(why, n, "/run is not a tmpfs"), why;
	struct stat st;
	if (statfs("/kern", &sf) || sf.f_type != SYSFS_MAGIC || stat("/kern/mm", &st) || !S_ISDIR(st.st_mode))
		return snprintf(why, n, "/kern is not sysfs's kernel/"), why;
	unsigned char *shm = shmat(shm_id, NULL, SHM_RDONLY);
	if (shm == (void *)-1)
		return snprintf(why, n, "shmat %d: %s", shm_id, strerror(errno)), why;
	for (int i = 0; i < SHM_SIZE; i++)
		if (shm[i] != (unsigned char)(i * 13 + 5))
			return snprintf(why, n, "shm byte %d is %d", i, shm[i]), why;
	shmdt(shm);
	unsigned short vals[3];
	if (semctl(sem_id, 0, GETALL, vals) || vals[0] != 3 || vals[1] != 5 || vals[2] != 7)
		return snprintf(why, n, "semaphores are not 3 5 7"), why;
	struct {
		long type;
		char text[32];
	} msg;
	memset(&msg, 0, sizeof(msg));
	if (msgrcv(msg_id, &msg, sizeof(msg.text), 0, IPC_NOWAIT) != 6 || msg.type != 1 || strcmp(msg.text, "first"))
		return snprintf(why, n, "first message lost"), why;
	memset(&msg, 0, sizeof(msg));
	if (msgrcv(msg_id, &msg, sizeof(msg.text), 0, IPC_NOWAIT) != 7 || msg.type != 2 || strcmp(msg.text, "second"))
		return snprintf(why, n, "second message lost"), why;
	if (gap(last_mono, mono) > 2.0 || gap(last_mono, mono) < 0)
		return snprintf(why, n, "CLOCK_MONOTONIC jumped by %.3f s", gap(last_mono, mono)), why;
	if (gap(last_boot, boot) > 2.0 || gap(last_boot, boot) < 0)
		return snprintf(why, n, "CLOCK_BOOTTIME jumped by %.3f s", gap(last_boot, boot)), why;
	if (kill(child_pid, 0))
		return snprintf(why, n, "child %d is gone", child_pid), why;
	if (!proc_has(own_status, "Name:\tctr-init\n") || !proc_has(own_status, "\nPid:\t1\n"))
		return snprintf(why, n, "its /proc/1/status does not name it"), why;
	return NULL;
}

static void child_loop(pid_t me)
{
	for (;;) {
		pause();
		if (!check_asked)
			continue;
		check_asked = 0;
		char status[64];
		snprintf(status, sizeof(status), "\nPid:\t%d\n", me);
		if (getpid() != me || getppid() != 1)
			put("/result.child", "FAIL: pid %d ppid %d, was %d 1\n", getpid(), getppid(), me);
		else if (!proc_has(own_status, "Name:\tctr-child\n") || !proc_has(own_status, status))
			put("/result.child", "FAIL: its /proc/%d/status does not name it\n", me);
		else if (!proc_has(parent_stat, "1 (ctr-init) "))
			put("/result.child", "FAIL: its /proc/1/stat does not name pid 1\n");
		else
			put("/result.child", "OK pid=%d\n", me);
	}
}

static void setup_ipc(void)
{
	shm_id = shmget(IPC_PRIVATE, SHM_SIZE, IPC_CREAT | 0600);
	unsigned char *shm = shmat(shm_id, NULL, 0);
	if (shm_id < 0 || shm == (void *)-1)
		die("shm");
	for (int i = 0; i < SHM_SIZE; i++)
		shm[i] = (unsigned char)(i * 13 + 5);
	shmdt(shm);
	sem_id = semget(IPC_PRIVATE, 3, IPC_CREAT | 0600);
	unsigned short vals[3] = { 3, 5, 7 };
	if (sem_id < 0 || semctl(sem_id, 0, SETALL, vals))
		die("sem");
	msg_id = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
	struct {
		long type;
		char text[32];
	} msg = { 1, "first" };
	if (msg_id < 0 || msgsnd(msg_id, &msg, 6, 0))
		die("msg");
	msg.type = 2;
	strcpy(msg.text, "second");
	if (msgsnd(msg_id, &msg, 7, 0))
		die("msg");
}

static __attribute__((noreturn)) void init_main(void)
{
	syscall(SYS_close_range, 0, ~0U, 0);
	signal(SIGUSR1, on_usr1);
	setup_ipc();
	prctl(PR_SET_NAME, "ctr-init");
	own_status = open("/proc/self/status", O_RDONLY);
	if (own_status < 0)
		die("open /proc/self/status");
	int told[2];
	if (pipe(told))
		die("pipe");
	child_pid = fork();
	if (child_pid == 0) {
		close(own_status);
		prctl(PR_SET_NAME, "ctr-child");
		own_status = open("/proc/self/status", O_RDONLY);
		parent_stat = open("/proc/1/stat", O_RDONLY);
		if (own_status < 0 || parent_stat < 0)
			die("open /proc files");
		close(told[0]);
		close(told[1]); /* the parent reads EOF: set up */
		child_loop(getpid());
	}
	close(told[1]);
	char eof;
	if (read(told[0], &eof, 1) != 0)
		die("wait for the child");
	close(told[0]);
	if (access("/ext", F_OK) == 0) {
		struct sockaddr_un a = { .sun_family = AF_UNIX };
		snprintf(a.sun_path, sizeof(a.sun_path), "/ext/ctr.sock");
		int l = socket(AF_UNIX, SOCK_STREAM, 0);
		if (l < 0 || bind(l, (void *)&a, sizeof(a)) || listen(l, 4))
			die("listen on /ext/ctr.sock");
	}
	char n[32];
	unsigned long last_put = 0;
	put("/ready", "%d\n", child_pid);
	for (;;) {
		count++;
		/* The clocks are compared with the previous turn's, taken
		 * 10 ms earlier unless a dump and restore came between. */
		struct timespec mono, boot;
		clock_gettime(CLOCK_MONOTONIC, &mono);
		clock_gettime(CLOCK_BOOTTIME, &boot);
		if (check_asked && count > 1) {
			check_asked = 0;
			char why[256];
			const char *bad = check_init(mono, boot, why, sizeof(why));
			if (bad)
				put("/result.init", "FAIL: %s\n", bad);
			else
				put("/result.init", "OK count=%lu\n", count);
		}
		last_mono = mono;
		last_boot = boot;
		if (count - last_put >= 10) {
			snprintf(n, sizeof(n), "%lu", count);
			put("/tmp/count", "%s\n", n);
			last_put = count;
		}
		waitpid(-1, NULL, WNOHANG);
		usleep(10000);
	}
}

int main(int argc, char **argv)
{
	if (argc >= 3 && !strcmp(argv[1], "launch")) {
		snprintf(rootfs, sizeof(rootfs), "%s", argv[2]);
		share_net = argc >= 4 && !strcmp(argv[3], "net");
		return launch();
	}
	init_main();
}
