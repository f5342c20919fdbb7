#!/usr/bin/env bash
# Two crit binaries side by side on the dump benchmark's task
# (tests/programs/bench.c: 18,000 unix sockets with queued messages and
# 1 GiB of dirty memory in 16,384 mappings), images on a tmpfs: for a
# change that must not make crit slower (old build against new).
#
#   scripts/bench-compare.sh OLD_CRIT NEW_CRIT
#
# Each round dumps a fresh task with each binary (the order alternates
# between rounds), then restores each binary's images with that binary
# (`restore -d`, timed until the tree runs) and kills the restored task.
# Reported per binary: median and best wall time of dump and of restore.
#
# Environment: RUNS (rounds, default 5), BENCH_DIR (default a new
# directory under /dev/shm). Needs root, cc and setsid.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# = 2 ] || { echo "usage: $0 OLD_CRIT NEW_CRIT" >&2; exit 2; }
RUNS=${RUNS:-5}
die() { echo "bench-compare: $*" >&2; exit 1; }
hard=$(ulimit -Hn)
ulimit -Sn "$hard" || die "cannot raise the soft RLIMIT_NOFILE to $hard"
WORK=$(mktemp -d /tmp/crit-bench-compare.XXXXXX)
cp "$1" "$WORK/old"; cp "$2" "$WORK/new"
BENCH_DIR=${BENCH_DIR:-$(mktemp -d /dev/shm/crit-bench-compare.XXXXXX)}
cc -O2 -o "$WORK/bench" tests/programs/bench.c
tpid=
cleanup() {
    [ -n "$tpid" ] && kill -9 "$tpid" 2>/dev/null || true
    rm -rf "$WORK" "$BENCH_DIR"
}
trap cleanup EXIT
now_us() { local t=$EPOCHREALTIME; echo "${t//[.,]/}"; }
gone() { for _ in $(seq 1 400); do [ -e "/proc/$1" ] || return 0; sleep 0.05; done; die "pid $1 stays"; }

start_task() {
    : > "$WORK/ready"
    ( setsid -w "$WORK/bench" < /dev/null > "$WORK/ready" 2>&1; true ) 2>/dev/null &
    for _ in $(seq 1 1200); do grep -q READY "$WORK/ready" && break; sleep 0.05; done
    tpid=$(awk '/READY/ { print $2 }' "$WORK/ready")
    [ -n "$tpid" ] || die "bench program failed: $(cat "$WORK/ready")"
}

# round SIDE: dump a fresh task and restore it with binary SIDE.
round() {
    local b=$WORK/$1 img=$BENCH_DIR/$1 t0 t1 t2
    rm -rf "$img"
    start_task
    t0=$(now_us)
    "$b" dump -t "$tpid" -D "$img" 2> "$WORK/err" || die "$1 dump: $(tail -n1 "$WORK/err")"
    t1=$(now_us)
    gone "$tpid"
    t1b=$(now_us)
    "$b" restore -d -D "$img" 2> "$WORK/err" || die "$1 restore: $(tail -n1 "$WORK/err")"
    t2=$(now_us)
    kill -9 "$tpid"; gone "$tpid"; tpid=
    echo "$(( t1 - t0 )) $(( t2 - t1b ))" >> "$WORK/$1.t"
    printf '  %s: dump %.3f s, restore %.3f s\n' "$1" \
        "$(awk -v u=$(( t1 - t0 )) 'BEGIN { print u / 1e6 }')" \
        "$(awk -v u=$(( t2 - t1b )) 'BEGIN { print u / 1e6 }')"
}

for i in $(seq 1 "$RUNS"); do
    echo "round $i of $RUNS"
    if [ $((i % 2)) = 1 ]; then round old; round new; else round new; round old; fi
done
stats() { # column of SIDE.t: "median best"
    cut -d' ' -f"$2" "$WORK/$1.t" | sort -n | awk '{ v[NR] = $1 } END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "median %.3f s, best %.3f s", m / 1e6, v[1] / 1e6 }'
}
for s in old new; do
    echo "$s: dump $(stats $s 1); restore $(stats $s 2)"
done
