#!/usr/bin/env bash
# Benchmark `crit dump` on one task holding 9,000 unix socketpairs with
# one queued message each (18,000 sockets) and 1 GiB of dirty memory in
# 16,384 mappings that do not merge (tests/programs/bench.c), dumping to a
# tmpfs. Prints, per run, crit's summary line (frozen time = from the
# moment every thread is stopped to the moment the tree is sent SIGKILL,
# with every image written and fsync'd; release = waiting for the killed
# task to exit), the wall time and CPU time; then the best and median
# frozen time.
#
# Target: at least 2x faster than CRIU 4.2 on the same load (CRIU takes
# about 1.5-2.2 s here), i.e. a frozen time under ~0.75 s.
#
# Environment:
#   RUNS       runs (default 5); each run starts a fresh task, since the
#              dump kills it (as CRIU does)
#   BENCH_DIR  where images go (default: a new directory under /dev/shm)
#   JOBS       cargo build jobs (default 2)
#   KEEP=1     keep the last images
#
# Needs root (ptrace, pidfd_getfd, /proc/PID/pagemap PFNs) and cc. On a
# busy machine wall and frozen times grow with the load; CPU time does not.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
JOBS=${JOBS:-2}
cargo build --release -j "$JOBS" --bin crit >/dev/null
CRIT=$PWD/target/release/crit
WORK=$(mktemp -d /tmp/crit-bench-dump.XXXXXX)
BENCH_DIR=${BENCH_DIR:-$(mktemp -d /dev/shm/crit-bench-dump.XXXXXX)}
cc -O2 -o "$WORK/bench" tests/programs/bench.c
pid=
cleanup() {
    if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null || true; fi
    rm -rf "$WORK"
    [ "${KEEP:-0}" = 1 ] || rm -rf "$BENCH_DIR"
}
trap cleanup EXIT
frozen=()
for i in $(seq 1 "$RUNS"); do
    rm -rf "$BENCH_DIR/img"
    "$WORK/bench" > "$WORK/ready" &
    pid=$!
    for _ in $(seq 1 1200); do
        grep -q READY "$WORK/ready" 2>/dev/null && break
        sleep 0.05
    done
    grep -q READY "$WORK/ready" || { echo "bench program failed" >&2; exit 1; }
    out=$( { /usr/bin/time -f "wall %e s, cpu %U user + %S sys" "$CRIT" dump -t "$pid" -D "$BENCH_DIR/img"; } 2>&1 )
    wait "$pid" 2>/dev/null || true
    pid=
    echo "run $i: $(echo "$out" | tr '\n' ' ')"
    frozen+=("$(echo "$out" | sed -n 's/.*frozen \([0-9.]*\) s.*/\1/p')")
done
sorted=$(printf '%s\n' "${frozen[@]}" | sort -n)
best=$(echo "$sorted" | head -1)
median=$(echo "$sorted" | sed -n "$(( (RUNS + 1) / 2 ))p")
echo "frozen time: best $best s, median $median s over $RUNS runs"
du -sh "$BENCH_DIR/img" | sed 's/^/images: /'
