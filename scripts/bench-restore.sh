#!/usr/bin/env bash
# Benchmark `crit restore` on the dump benchmark's task: 9,000 unix
# socketpairs with one queued message each (18,000 sockets) and 1 GiB of
# dirty memory in 16,384 mappings that do not merge
# (tests/programs/bench.c), with the images on a tmpfs; with CRIU_REF,
# restore with CRIU in the same run, side by side.
#
# The task is dumped once with `crit dump` (and, with CRIU_REF, a second
# instance once with `criu dump -v0`); then each run restores every image
# set detached (`restore -d`), timing the restore command from its start
# to its exit, i.e. until the tree runs. The restores run under a small
# child subreaper (compiled from this script) that times the command,
# checks the restored task (its pid, state, number of fds and mappings),
# then kills it and reaps it, so that its pid is free for the next run.
# Measured, with CRIU_REF (each run goes through them in a rotated order):
#
#   crit restore of crit's images     crit restore of CRIU's images
#   criu restore of CRIU's images     criu restore of crit's images
#
# Reported per case: wall time best and median, and CPU time (user +
# system of the restore command and of the restored task, which does part
# of the work with both tools, counted once it is reaped).
#
# Target: our restore at least 1.5x faster than CRIU 4.2's (median wall
# time, measured side by side).
#
# Environment:
#   CRIU_REF        a criu 4.2 executable (`criu restore -D DIR -d -v0`)
#   CRIU_ARGS       extra arguments for criu restore
#   RUNS            runs per case (default 5)
#   QUIET=PCT       before each measurement wait (up to QUIET_WAIT seconds,
#                   default 300) until the other sessions used at most PCT %
#                   of the CPUs over the last second
#   PHASES=0        skip the extra (untimed) `crit restore -d -vv` at the
#                   end that prints crit's phase timestamps
#   BENCH_DIR       where images go (default: a new directory under /dev/shm)
#   WARM=MIB        right before each timed restore, touch and free MIB
#                   MiB of fresh memory (default 3072; 0: no warming), so
#                   that neither engine meets memory the VM's host took
#                   back (scripts/bench-warm.h says why)
#   JOBS            cargo build jobs (default 2)
#   KEEP=1          keep the images
#
# Needs root, cc and setsid. The task is started with setsid, stdin
# /dev/null and stdout to a file, so that neither side needs --shell-job.
# 18,000 sockets need a soft RLIMIT_NOFILE above 18,005: the script raises
# it to the hard limit. (CRIU logs that it cannot raise its own
# RLIMIT_NOFILE beyond that; harmless here.) On a busy machine wall times
# grow with the load: the load average and the share of the CPUs the other
# sessions used in the second before each measurement are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
JOBS=${JOBS:-2}
die() { echo "bench-restore: $*" >&2; exit 1; }

[ -n "${EPOCHREALTIME:-}" ] || die "bash 5 or later is needed"
command -v setsid >/dev/null || die "setsid (util-linux) is missing"
if [ -n "${CRIU_REF:-}" ]; then
    [ -x "$CRIU_REF" ] || CRIU_REF=$(command -v "$CRIU_REF") || die "CRIU_REF is not executable"
fi
hard=$(ulimit -Hn)
ulimit -Sn "$hard" || die "cannot raise the soft RLIMIT_NOFILE to $hard"
[ "$hard" = unlimited ] || [ "$hard" -ge 18100 ] ||
    die "RLIMIT_NOFILE hard limit $hard is below the 18,005 fds the task holds"

cargo build --release -j "$JOBS" --bin crit >&2
WORK=$(mktemp -d /tmp/crit-bench-restore.XXXXXX)
# A copy, so that a concurrent rebuild does not change the binary mid-run.
cp target/release/crit "$WORK/crit"
CRIT=$WORK/crit
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff-index --quiet HEAD -- 2>/dev/null || rev="$rev + uncommitted changes"
echo "bench-restore: crit built from $rev" >&2
BENCH_DIR=${BENCH_DIR:-$(mktemp -d /dev/shm/crit-bench-restore.XXXXXX)}
mkdir -p "$BENCH_DIR"
[ "$(stat -f -c %T "$BENCH_DIR")" = tmpfs ] || echo "bench-restore: warning: $BENCH_DIR is not on a tmpfs" >&2
cc -O2 -o "$WORK/bench" tests/programs/bench.c
cc -O2 -o "$WORK/warm" scripts/bench-warm.c

# subreap CMD ARGS...: become a child subreaper, run CMD and time it until
# it exits; describe the tasks it left behind (now our children); SIGKILL
# and reap them and everything reparented to us as they die, so that their
# pids are free on return. Prints
#   wall SECONDS status RC cpu SECONDS
#   tree PID state S fds N maps N        (one line per task left)
# cpu: user + system of CMD and all it left, once everything is reaped.
cat > "$WORK/subreap.c" <<'EOF'
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX 4096

static int children(pid_t *out)
{
	char path[64];
	int n = 0;
	snprintf(path, sizeof(path), "/proc/self/task/%d/children", getpid());
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	while (n < MAX && fscanf(f, "%d", &out[n]) == 1)
		n++;
	fclose(f);
	return n;
}

static long count_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	long n = 0;
	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static long count_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	long n = 0;
	int c;
	if (!f)
		return -1;
	while ((c = getc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

static char state_of(pid_t p)
{
	char path[64], buf[512], s = '?', *q;
	snprintf(path, sizeof(path), "/proc/%d/stat", p);
	FILE *f = fopen(path, "r");
	if (!f)
		return s;
	if (fgets(buf, sizeof(buf), f) && (q = strrchr(buf, ')')) && q[1] == ' ')
		s = q[2];
	fclose(f);
	return s;
}

static char lines[MAX][96];

int main(int argc, char **argv)
{
	struct timespec t0, t1;
	struct rusage ru;
	pid_t kids[MAX], c;
	int st, n;

	if (argc < 2 || prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) {
		fprintf(stderr, "usage: subreap CMD [ARGS...] (as a child subreaper)\n");
		return 2;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	c = fork();
	if (c < 0)
		return 2;
	if (c == 0) {
		execvp(argv[1], argv + 1);
		perror(argv[1]);
		_exit(127);
	}
	while (waitpid(c, &st, 0) < 0)
		if (errno != EINTR)
			return 2;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	n = children(kids);
	for (int i = 0; i < n; i++) {
		char p1[64], p2[64];
		snprintf(p1, sizeof(p1), "/proc/%d/fd", kids[i]);
		snprintf(p2, sizeof(p2), "/proc/%d/maps", kids[i]);
		snprintf(lines[i], sizeof(lines[i]), "tree %d state %c fds %ld maps %ld",
			 kids[i], state_of(kids[i]), count_dir(p1), count_lines(p2));
	}
	for (;;) {
		pid_t k[MAX];
		int m = children(k), s;
		for (int i = 0; i < m; i++)
			kill(k[i], SIGKILL);
		if (waitpid(-1, &s, 0) < 0 && errno == ECHILD)
			break;
	}
	getrusage(RUSAGE_CHILDREN, &ru);
	printf("wall %.6f status %d cpu %.2f\n",
	       (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9,
	       WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st),
	       ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
	for (int i = 0; i < n; i++)
		printf("%s\n", lines[i]);
	return 0;
}
EOF
cc -O2 -o "$WORK/subreap" "$WORK/subreap.c"

tpid= spid=
cleanup() {
    if [ -n "$tpid" ]; then kill -9 "$tpid" 2>/dev/null || true; fi
    if [ -n "$spid" ]; then wait "$spid" 2>/dev/null || true; fi
    rm -rf "$WORK"
    [ "${KEEP:-0}" = 1 ] || rm -rf "$BENCH_DIR"
}
trap cleanup EXIT

# Percentage of the CPUs busy during one second in which this script only
# sleeps: the other sessions' load.
cpu_busy() {
    local c u n s i w q sq st r a b
    read -r c u n s i w q sq st r < /proc/stat
    a=("$u" "$n" "$s" "$i" "$w" "$q" "$sq" "$st")
    sleep 1
    read -r c u n s i w q sq st r < /proc/stat
    b=("$u" "$n" "$s" "$i" "$w" "$q" "$sq" "$st")
    awk -v a="${a[*]}" -v b="${b[*]}" 'BEGIN {
        split(a, x); split(b, y); t = 0; idle = 0
        for (k = 1; k <= 8; k++) { d = y[k] - x[k]; t += d; if (k == 4 || k == 5) idle += d }
        printf "%.0f", (t > 0) ? 100 * (t - idle) / t : 0 }'
}

sample_load() {
    local waited=0
    busy=$(cpu_busy)
    if [ -n "${QUIET:-}" ]; then
        while [ "$busy" -gt "$QUIET" ] && [ "$waited" -lt "${QUIET_WAIT:-300}" ]; do
            busy=$(cpu_busy)
            waited=$((waited + 1))
        done
    fi
    load=$(cut -d' ' -f1 /proc/loadavg)
}

# start_task NAME: a fresh benchmark task, its stdout in $WORK/NAME.out
# (kept unchanged: the images refer to it). $tpid is the task, $spid our
# child to reap (a subshell, so that bash reports no "Killed" job).
start_task() {
    local out=$WORK/$1.out
    : > "$out"
    ( setsid -w "$WORK/bench" < /dev/null > "$out" 2>&1; true ) 2>/dev/null &
    spid=$!
    for _ in $(seq 1 1200); do
        grep -q READY "$out" 2>/dev/null && break
        kill -0 "$spid" 2>/dev/null || break
        sleep 0.05
    done
    grep -q READY "$out" || die "bench program failed: $(cat "$out")"
    tpid=$(awk '/READY/ { print $2 }' "$out")
}

end_task() {
    kill -9 "$tpid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    for _ in $(seq 1 200); do [ -e "/proc/$tpid" ] || break; sleep 0.05; done
    tpid= spid=
}

# The images.
declare -A pid_of=()
start_task crit-img
pid_of[crit-img]=$tpid
"$CRIT" dump -t "$tpid" -D "$BENCH_DIR/crit-img" 2> "$WORK/dump.err" ||
    die "crit dump failed: $(tail -n1 "$WORK/dump.err")"
end_task
echo "crit-img: $(tail -n1 "$WORK/dump.err")"
cases=("crit crit-img")
if [ -n "${CRIU_REF:-}" ]; then
    start_task criu-img
    pid_of[criu-img]=$tpid
    mkdir -p "$BENCH_DIR/criu-img"
    "$CRIU_REF" dump -t "$tpid" -D "$BENCH_DIR/criu-img" -v0 2> "$WORK/dump.err" ||
        die "criu dump failed: $(tail -n1 "$WORK/dump.err")"
    end_task
    echo "criu-img: dumped by criu (pid ${pid_of[criu-img]})"
    cases=("crit crit-img" "criu criu-img" "crit criu-img" "criu crit-img")
fi
echo "bench-restore: $RUNS runs, images in $BENCH_DIR ($(du -sh "$BENCH_DIR/crit-img" | cut -f1) per set)"

# restore WHO IMG [extra args]: one measured restore; appends
# "wall cpu load busy" to $WORK/WHO-IMG.t, or counts a failure.
declare -A failures=()
restore() {
    local who=$1 img=$2 pid=${pid_of[$2]} key=$1-$2 rc=0 wall status cpu tree
    shift 2
    for _ in $(seq 1 200); do [ -e "/proc/$pid" ] || break; sleep 0.05; done
    [ -e "/proc/$pid" ] && { echo "  $who restore $img: pid $pid is in use; skipped"; failures[$key]=$(( ${failures[$key]:-0} + 1 )); return; }
    sample_load
    "$WORK/warm" "${WARM:-3072}"
    if [ "$who" = crit ]; then
        "$WORK/subreap" "$CRIT" restore -D "$BENCH_DIR/$img" -d "$@" > "$WORK/sr.out" 2> "$WORK/sr.err" || rc=$?
    else
        # shellcheck disable=SC2086
        "$WORK/subreap" "$CRIU_REF" restore -D "$BENCH_DIR/$img" -d -v0 ${CRIU_ARGS:-} "$@" > "$WORK/sr.out" 2> "$WORK/sr.err" || rc=$?
    fi
    read -r _ wall _ status _ cpu < <(grep '^wall ' "$WORK/sr.out" || echo "wall - status $rc cpu -")
    tree=$(grep "^tree $pid " "$WORK/sr.out" || true)
    if [ "$rc" != 0 ] || [ "$status" != 0 ] || [ -z "$tree" ] ||
        ! echo "$tree" | awk '{ exit !($4 ~ /[SR]/ && $6 >= 18000 && $8 >= 16384) }'; then
        echo "  $who restore $img: FAILED (exit $status; $(grep '^tree' "$WORK/sr.out" | head -n1); $(grep -v '^\s*$' "$WORK/sr.err" | tail -n1))"
        failures[$key]=$(( ${failures[$key]:-0} + 1 ))
        return
    fi
    echo "$wall $cpu $load $busy" >> "$WORK/$key.t"
    printf '  %s restore %-8s: wall %.3f s, cpu %s s  (pid %s %s, %s fds, %s mappings)  [load %s, others %s%% CPU]\n' \
        "$who" "$img" "$wall" "$cpu" "$pid" "$(echo "$tree" | awk '{ print $4 }')" \
        "$(echo "$tree" | awk '{ print $6 }')" "$(echo "$tree" | awk '{ print $8 }')" "$load" "$busy"
}

for i in $(seq 1 "$RUNS"); do
    echo "run $i:"
    n=${#cases[@]}
    for ((k = 0; k < n; k++)); do
        # shellcheck disable=SC2086
        restore ${cases[$(( (k + i - 1) % n ))]}
    done
done

stats() {
    [ -s "$1" ] || { echo "- -"; return; }
    cut -d' ' -f"$2" < "$1" | sort -g | awk '{ a[NR] = $1 }
        END { m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
              printf "%.3f %.3f", a[1], m }'
}
ratio() { awk -v r="$1" -v o="$2" 'BEGIN { if (r == "-" || o == "-" || o <= 0) print "-"; else printf "%.2fx", r / o }'; }
all=$(cat "$WORK"/*.t 2>/dev/null || true)

echo
echo "summary over $RUNS runs (best / median), load average $(echo "$all" | cut -d' ' -f3 | sort -g | sed -n '1p;$p' | paste -sd-) (1 min)," \
    "other sessions $(echo "$all" | cut -d' ' -f4 | sort -g | sed -n '1p;$p' | paste -sd-) % CPU:"
declare -A med=() best=()
for c in "${cases[@]}"; do
    key=${c/ /-}
    read -r wb wm <<< "$(stats "$WORK/$key.t" 1)"
    read -r _ cm <<< "$(stats "$WORK/$key.t" 2)"
    med[$key]=$wm best[$key]=$wb
    printf '  %s restore %-8s: wall %s / %s s, cpu median %s s (%s ok, %s failed)\n' \
        "${c% *}" "${c#* }" "$wb" "$wm" "$cm" "$( [ -s "$WORK/$key.t" ] && wc -l < "$WORK/$key.t" || echo 0)" "${failures[$key]:-0}"
done
if [ -n "${CRIU_REF:-}" ]; then
    sp=$(ratio "${med[criu-criu-img]}" "${med[crit-crit-img]}")
    echo "  speedup (criu / crit), each on its own images: median $sp, best $(ratio "${best[criu-criu-img]}" "${best[crit-crit-img]}")"
    echo "  speedup on CRIU's images: median $(ratio "${med[criu-criu-img]}" "${med[crit-criu-img]}"), best $(ratio "${best[criu-criu-img]}" "${best[crit-criu-img]}")"
    echo "  speedup on crit's images: median $(ratio "${med[criu-crit-img]}" "${med[crit-crit-img]}"), best $(ratio "${best[criu-crit-img]}" "${best[crit-crit-img]}")"
    awk -v r="${med[criu-criu-img]}" -v o="${med[crit-crit-img]}" 'BEGIN { exit !(o != "-" && r != "-" && o > 0 && r / o >= 1.5) }' &&
        echo "  target (>= 1.5x, median wall, each on its own images): met" ||
        echo "  target (>= 1.5x, median wall, each on its own images): MISSED"
fi

if [ "${PHASES:-1}" = 1 ]; then
    for img in crit-img ${CRIU_REF:+criu-img}; do
        pid=${pid_of[$img]}
        for _ in $(seq 1 200); do [ -e "/proc/$pid" ] || break; sleep 0.05; done
        "$WORK/warm" "${WARM:-3072}"
        "$WORK/subreap" "$CRIT" restore -D "$BENCH_DIR/$img" -d -vv > "$WORK/sr.out" 2> "$WORK/sr.err" || true
        echo "crit restore phases (one more run on $img, -vv; load $(cut -d' ' -f1 /proc/loadavg)):"
        grep '^crit: \[' "$WORK/sr.err" | grep -v ' fd [0-9]' | sed 's/^/  /' || true
        sed -n '1s/^/  /p' "$WORK/sr.out"
    done
    echo "pagemap entries: crit-img $("$CRIT" info "$BENCH_DIR"/crit-img/pagemap-*.img | sed -n 's/.*"count": *\([0-9]*\).*/\1/p')${CRIU_REF:+, criu-img $("$CRIT" info "$BENCH_DIR"/criu-img/pagemap-*.img | sed -n 's/.*"count": *\([0-9]*\).*/\1/p')}"
fi
[ -z "${failures[crit-crit-img]:-}" ]
