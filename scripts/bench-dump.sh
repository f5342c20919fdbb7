#!/usr/bin/env bash
# Benchmark `crit dump` on one task holding 9,000 unix socketpairs with
# one queued message each (18,000 sockets) and 1 GiB of dirty memory in
# 16,384 mappings that do not merge (tests/programs/bench.c), dumping to a
# tmpfs; with CRIU_REF, dump the same task with CRIU in the same run, side
# by side.
#
# Each run starts a fresh task (a dump kills it, as CRIU's does), lets it
# settle while sampling the machine's CPU use for one second, then times
# the dump command (wall time from bash's microsecond clock, CPU time of
# the dump command from GNU time). With CRIU_REF each run does both sides,
# alternating which goes first. Reported per side: wall time and frozen
# time, best and median.
#
#   crit:  frozen = from the moment every thread is stopped to the moment
#          the tree is sent SIGKILL (or resumed), every image written and
#          fsync'd; release = waiting for the killed task to exit (from
#          crit's summary line).
#   CRIU:  frozen_time and freezing_time from its stats-dump image (read
#          with `crit show DIR/stats-dump`; microseconds there).
#
# Target: our dump at least 2x faster than CRIU 4.2's (median wall time,
# measured side by side).
#
# Environment:
#   CRIU_REF        a criu 4.2 executable: also dump with it
#                   (`criu dump -t PID -D DIR -v0`)
#   CRIU_ARGS       extra arguments for criu dump (e.g. "-v4 -o dump.log")
#   RUNS            runs per side (default 5)
#   LEAVE_RUNNING=1 dump with -R / --leave-running on both sides (the task
#                   is killed by the script afterwards); default: both
#                   dumps kill the task
#   QUIET=PCT       before each measurement wait (up to QUIET_WAIT seconds,
#                   default 300) until the other sessions used at most PCT %
#                   of the CPUs over the last second
#   PHASES=0        skip the extra (untimed) `crit dump -v -o LOG` run at
#                   the end that prints crit's phase timestamps
#   BENCH_DIR       where images go (default: a new directory under /dev/shm)
#   WARM=MIB        right before each timed dump, touch and free MIB MiB
#                   of fresh memory (default 3072; 0: no warming), so that
#                   neither engine's page copy meets memory the VM's host
#                   took back (scripts/bench-warm.h says why)
#   JOBS            cargo build jobs (default 2)
#   KEEP=1          keep the last images
#
# Needs root (ptrace, pidfd_getfd, /proc/PID/pagemap PFNs), cc, setsid
# and GNU time. The task is started with setsid, stdin /dev/null and
# stdout to a file, so that neither side needs --shell-job. 18,000 sockets
# need a soft RLIMIT_NOFILE above 18,005: the script raises it to the hard
# limit. On a busy machine wall and frozen times grow with the load; CPU
# time much less so: the load average and the share of the CPUs the other
# sessions used in the second before each measurement are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
JOBS=${JOBS:-2}
TIME=/usr/bin/time
die() { echo "bench-dump: $*" >&2; exit 1; }

[ -n "${EPOCHREALTIME:-}" ] || die "bash 5 or later is needed (EPOCHREALTIME)"
[ -x "$TIME" ] || die "GNU time ($TIME) is missing (Debian package 'time')"
command -v setsid >/dev/null || die "setsid (util-linux) is missing"
if [ -n "${CRIU_REF:-}" ]; then
    [ -x "$CRIU_REF" ] || CRIU_REF=$(command -v "$CRIU_REF") || die "CRIU_REF is not executable"
fi
hard=$(ulimit -Hn)
ulimit -Sn "$hard" || die "cannot raise the soft RLIMIT_NOFILE to $hard"
[ "$hard" = unlimited ] || [ "$hard" -ge 18100 ] ||
    die "RLIMIT_NOFILE hard limit $hard is below the 18,005 fds the task holds"

cargo build --release -j "$JOBS" --bin crit >&2
WORK=$(mktemp -d /tmp/crit-bench-dump.XXXXXX)
# A copy, so that a concurrent rebuild does not change the binary mid-run.
cp target/release/crit "$WORK/crit"
CRIT=$WORK/crit
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff-index --quiet HEAD -- 2>/dev/null || rev="$rev + uncommitted changes"
echo "bench-dump: crit built from $rev" >&2
BENCH_DIR=${BENCH_DIR:-$(mktemp -d /dev/shm/crit-bench-dump.XXXXXX)}
mkdir -p "$BENCH_DIR"
[ "$(stat -f -c %T "$BENCH_DIR")" = tmpfs ] || echo "bench-dump: warning: $BENCH_DIR is not on a tmpfs" >&2
cc -O2 -o "$WORK/bench" tests/programs/bench.c
cc -O2 -o "$WORK/warm" scripts/bench-warm.c

tpid= spid=
cleanup() {
    if [ -n "$tpid" ]; then kill -9 "$tpid" 2>/dev/null || true; fi
    if [ -n "$spid" ]; then wait "$spid" 2>/dev/null || true; fi
    rm -rf "$WORK"
    [ "${KEEP:-0}" = 1 ] || rm -rf "$BENCH_DIR"
}
trap cleanup EXIT

now_us() { local t=$EPOCHREALTIME; echo "${t//[.,]/}"; }

# Percentage of the CPUs busy (user, system, irq, steal...) during one
# second in which this script only sleeps: the other sessions' load.
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

# Samples the load into $busy and $load, waiting for a quiet moment if
# QUIET is set.
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

# Starts a fresh benchmark task: $tpid is the task, $spid our child to reap.
start_task() {
    : > "$WORK/ready"
    # In a subshell that outlives the task, so that bash reports no
    # "Killed" job; the subshell is $spid, the task its child.
    ( setsid -w "$WORK/bench" < /dev/null > "$WORK/ready" 2>&1; true ) 2>/dev/null &
    spid=$!
    for _ in $(seq 1 1200); do
        grep -q READY "$WORK/ready" 2>/dev/null && break
        kill -0 "$spid" 2>/dev/null || break
        sleep 0.05
    done
    grep -q READY "$WORK/ready" || die "bench program failed: $(cat "$WORK/ready")"
    tpid=$(awk '/READY/ { print $2 }' "$WORK/ready")
}

# Kills the task if it still runs and reaps it.
end_task() {
    kill -9 "$tpid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    for _ in $(seq 1 200); do [ -e "/proc/$tpid" ] || break; sleep 0.05; done
    tpid= spid=
}

lr=${LEAVE_RUNNING:-0}
: > "$WORK/crit.t"
: > "$WORK/criu.t"
failed=0

# Each appends "wall_s frozen_s extra_s cpu_s load busy" to $WORK/SIDE.t
# and prints one line.
run_crit() {
    local img=$BENCH_DIR/crit-img t0 t1 rc=0 out frozen release cpu
    rm -rf "$img"
    start_task
    sample_load
    "$WORK/warm" "${WARM:-3072}"
    t0=$(now_us)
    "$TIME" -f "%U %S" -o "$WORK/time" "$CRIT" dump -t "$tpid" -D "$img" \
        $([ "$lr" = 1 ] && echo -R) 2> "$WORK/crit.err" || rc=$?
    t1=$(now_us)
    end_task
    out=$(tail -n1 "$WORK/crit.err")
    if [ $rc != 0 ]; then
        echo "  crit dump FAILED (exit $rc): $out"
        failed=1
        return
    fi
    frozen=$(echo "$out" | sed -n 's/.*frozen \([0-9.]*\) s.*/\1/p')
    release=$(echo "$out" | sed -n 's/.*release \([0-9.]*\) s.*/\1/p')
    cpu=$(awk '{ printf "%.2f", $1 + $2 }' "$WORK/time")
    echo "$(( t1 - t0 )) $frozen $release $cpu $load $busy" |
        awk '{ printf "%.4f %s %s %s %s %s\n", $1 / 1e6, $2, $3, $4, $5, $6 }' >> "$WORK/crit.t"
    printf '  crit dump: wall %.3f s, frozen %s s (release %s s), cpu %s s  [load %s, others %s%% CPU]\n' \
        "$(awk -v u=$(( t1 - t0 )) 'BEGIN { print u / 1e6 }')" "$frozen" "$release" "$cpu" "$load" "$busy"
    [ "$i" = "$RUNS" ] && echo "    $(du -sh "$img" | cut -f1) of images, $(ls "$img" | wc -l) files"
    return 0
}

run_criu() {
    local img=$BENCH_DIR/criu-img t0 t1 rc=0 stats frozen freezing cpu
    rm -rf "$img"
    mkdir -p "$img"
    start_task
    sample_load
    "$WORK/warm" "${WARM:-3072}"
    t0=$(now_us)
    # shellcheck disable=SC2086
    "$TIME" -f "%U %S" -o "$WORK/time" "$CRIU_REF" dump -t "$tpid" -D "$img" -v0 \
        $([ "$lr" = 1 ] && echo --leave-running) ${CRIU_ARGS:-} 2> "$WORK/criu.err" || rc=$?
    t1=$(now_us)
    end_task
    if [ $rc != 0 ]; then
        echo "  criu dump FAILED (exit $rc): $(tail -n1 "$WORK/criu.err") (CRIU_ARGS='-v4 -o dump.log' for a log in the images dir)"
        return
    fi
    stats=$("$CRIT" show "$img/stats-dump")
    frozen=$(echo "$stats" | sed -n 's/.*"frozen_time": *\([0-9]*\).*/\1/p' | awk '{ printf "%.3f", $1 / 1e6 }')
    freezing=$(echo "$stats" | sed -n 's/.*"freezing_time": *\([0-9]*\).*/\1/p' | awk '{ printf "%.4f", $1 / 1e6 }')
    cpu=$(awk '{ printf "%.2f", $1 + $2 }' "$WORK/time")
    echo "$(( t1 - t0 )) $frozen $freezing $cpu $load $busy" |
        awk '{ printf "%.4f %s %s %s %s %s\n", $1 / 1e6, $2, $3, $4, $5, $6 }' >> "$WORK/criu.t"
    printf '  criu dump: wall %.3f s, frozen %s s (freezing %s s), cpu %s s  [load %s, others %s%% CPU]\n' \
        "$(awk -v u=$(( t1 - t0 )) 'BEGIN { print u / 1e6 }')" "$frozen" "$freezing" "$cpu" "$load" "$busy"
}

echo "bench-dump: $RUNS runs, images in $BENCH_DIR, $([ "$lr" = 1 ] && echo "the task left running" || echo "the task killed")" \
    "by the dump${CRIU_REF:+, side by side with $CRIU_REF}"
for i in $(seq 1 "$RUNS"); do
    echo "run $i:"
    if [ -z "${CRIU_REF:-}" ]; then
        run_crit
    elif [ $((i % 2)) = 1 ]; then
        run_crit; run_criu
    else
        run_criu; run_crit
    fi
done

# stats FILE COLUMN -> "best median" (empty file: "- -")
stats() {
    [ -s "$1" ] || { echo "- -"; return; }
    cut -d' ' -f"$2" < "$1" | sort -g | awk '{ a[NR] = $1 }
        END { m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
              printf "%.3f %.3f", a[1], m }'
}
range() { [ -s "$1" ] && cut -d' ' -f"$2" < "$1" | sort -g | sed -n '1p;$p' | paste -sd- || echo -; }
ratio() { awk -v r="$1" -v o="$2" 'BEGIN { if (r == "-" || o == "-" || o <= 0) print "-"; else printf "%.2fx", r / o }'; }

echo
read -r cwb cwm <<< "$(stats "$WORK/crit.t" 1)"
read -r cfb cfm <<< "$(stats "$WORK/crit.t" 2)"
read -r crb crm <<< "$(stats "$WORK/crit.t" 3)"
read -r ccb ccm <<< "$(stats "$WORK/crit.t" 4)"
cat "$WORK/crit.t" "$WORK/criu.t" > "$WORK/all.t"
echo "summary over $RUNS runs (best / median), load average $(range "$WORK/all.t" 5) (1 min), other sessions $(range "$WORK/all.t" 6) % CPU:"
echo "  crit dump: wall $cwb / $cwm s, frozen $cfb / $cfm s, release median $crm s, cpu median $ccm s ($(wc -l < "$WORK/crit.t") ok)"
if [ -n "${CRIU_REF:-}" ]; then
    read -r rwb rwm <<< "$(stats "$WORK/criu.t" 1)"
    read -r rfb rfm <<< "$(stats "$WORK/criu.t" 2)"
    read -r rcb rcm <<< "$(stats "$WORK/criu.t" 4)"
    echo "  criu dump: wall $rwb / $rwm s, frozen $rfb / $rfm s, cpu median $rcm s ($(wc -l < "$WORK/criu.t") ok)"
    sp=$(ratio "$rwm" "$cwm")
    echo "  speedup (criu / crit): wall median $sp, best $(ratio "$rwb" "$cwb"); frozen median $(ratio "$rfm" "$cfm"), best $(ratio "$rfb" "$cfb")"
    awk -v r="$rwm" -v o="$cwm" 'BEGIN { exit !(o != "-" && r != "-" && o > 0 && r / o >= 2) }' &&
        echo "  target (>= 2x, median wall): met" || echo "  target (>= 2x, median wall): MISSED"
fi

if [ "${PHASES:-1}" = 1 ] && [ $failed = 0 ]; then
    # One more, untimed, with crit's phase timestamps (seconds since start).
    rm -rf "$BENCH_DIR/crit-img"
    start_task
    "$WORK/warm" "${WARM:-3072}"
    "$CRIT" dump -t "$tpid" -D "$BENCH_DIR/crit-img" $([ "$lr" = 1 ] && echo -R) \
        -v -o "$WORK/phases.log" 2>/dev/null || true
    end_task
    echo "crit dump phases (one more run, -v -o LOG; load $(cut -d' ' -f1 /proc/loadavg)):"
    grep -v ' fd [0-9]' "$WORK/phases.log" | sed 's/^/  /' || true
    echo
fi
exit $failed
