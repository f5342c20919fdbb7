#!/usr/bin/env bash
# Benchmark crit on a synthetic dump of one task holding 9,000 socketpairs
# (files.img with ~27,000 entries, fdinfo with ~27,000 fds), made by
# crit-gen-bench on a tmpfs.
#
# Measures wall time and peak RSS of
#   crit decode -i files.img -o out.json
#   crit show files.img > /dev/null
#   crit x DIR fds > /dev/null
#   crit encode -i out.json -o back.img      (and checks back.img == files.img)
# RUNS times each (default 5) and prints best and median.
#
# With CRIT_REF=/path/to/crit (a crit 4.2 executable), runs the same
# commands with it in the same run and prints the speedup (median time of
# the reference / ours) and the RSS ratio (ours / reference), against the
# targets: >= 50x faster and <= 1/4 of the peak RSS.
#
# Environment:
#   CRIT_REF    reference crit executable (optional)
#   RUNS        runs per command (default 5)
#   REF_RUNS    runs per command for the reference (default RUNS)
#   BENCH_DIR   where to put the images and outputs (default: a new
#               directory under /dev/shm, or another tmpfs)
#   JOBS        cargo build jobs (default 1)
#   GEN_ARGS    extra options for crit-gen-bench (e.g. "--pairs 1000")
#
# Wall time is read from bash's microsecond clock around each run (GNU
# time's %e has only 10 ms resolution), so it includes starting GNU time
# (about 1 ms). Peak RSS is GNU time's %M. CPU time (user + system, %U +
# %S) is shown too: on a busy machine short runs lose a larger share of
# their wall time to waiting for a CPU.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-5}
REF_RUNS=${REF_RUNS:-$RUNS}
JOBS=${JOBS:-1}
TIME=/usr/bin/time

die() { echo "bench: $*" >&2; exit 1; }

# GNU time, for the peak RSS.
if ! [ -x "$TIME" ] || ! "$TIME" -f "%e %M" true >/dev/null 2>&1; then
    echo "bench: GNU time ($TIME) is missing; installing the Debian package 'time' with apt-get" >&2
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get install -y time >/dev/null 2>&1 ||
            { apt-get update >/dev/null 2>&1 && apt-get install -y time >/dev/null 2>&1; } ||
            die "could not install 'time'; install it (apt-get install time) and run again"
    else
        die "install GNU time (Debian package 'time') and run again"
    fi
fi

if [ -n "${CRIT_REF:-}" ]; then
    [ -x "$CRIT_REF" ] || command -v "$CRIT_REF" >/dev/null || die "CRIT_REF=$CRIT_REF is not executable"
fi

echo "bench: building release (cargo build --release -j$JOBS)" >&2
(cd "$here" && cargo build --release -j"$JOBS" --bin crit --bin crit-gen-bench) >&2
target=$(cd "$here" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
target=${target:-$here/target}
CRIT=$target/release/crit
GEN=$target/release/crit-gen-bench
[ -x "$CRIT" ] && [ -x "$GEN" ] || die "release binaries not found in $target/release"

# A directory on tmpfs, so that the disk is not what is measured.
is_tmpfs() { [ "$(stat -f -c %T "$1" 2>/dev/null)" = tmpfs ]; }
if [ -n "${BENCH_DIR:-}" ]; then
    mkdir -p "$BENCH_DIR"
    work=$BENCH_DIR
    is_tmpfs "$work" || echo "bench: warning: $work is not on a tmpfs" >&2
    cleanup=
else
    base=
    for d in /dev/shm /run/user/$(id -u) /tmp; do
        if [ -d "$d" ] && [ -w "$d" ] && is_tmpfs "$d"; then base=$d; break; fi
    done
    if [ -z "$base" ]; then
        base=${TMPDIR:-/tmp}
        echo "bench: warning: no writable tmpfs found; using $base" >&2
    fi
    work=$(mktemp -d "$base/crit-bench.XXXXXX")
    cleanup=$work
fi
trap '[ -n "$cleanup" ] && rm -rf "$cleanup"' EXIT
imgs=$work/imgs
rm -rf "$imgs"
# shellcheck disable=SC2086
"$GEN" "$imgs" ${GEN_ARGS:-} >&2
echo "bench: images in $imgs ($(du -sh "$imgs/files.img" | cut -f1) files.img); $RUNS runs each" >&2

# Microseconds from bash's clock (no process started to read it).
now_us() { local t=$EPOCHREALTIME; echo "${t//[.,]/}"; }
[ -n "${EPOCHREALTIME:-}" ] || die "bash 5 or later is needed (EPOCHREALTIME)"

# run TAG N OUT CMD...: runs CMD N times, standard output to OUT; writes
# "wall_us kb cpu_s" lines to $work/TAG.t. Returns non-zero if a run failed.
run() {
    local tag=$1 n=$2 out=$3; shift 3
    local i t0 t1 rc=0
    : > "$work/$tag.t"
    for ((i = 0; i < n; i++)); do
        t0=$(now_us)
        "$TIME" -f "%e %M %U %S" -o "$work/$tag.time" "$@" > "$out" 2> "$work/$tag.err" || rc=1
        t1=$(now_us)
        [ $rc = 0 ] || break
        echo "$((t1 - t0)) $(tail -n1 "$work/$tag.time" | awk '{ printf "%s %.2f", $2, $3 + $4 }')" >> "$work/$tag.t"
    done
    return $rc
}

# stats TAG -> "best_s median_s best_kb median_kb median_cpu_s"
stats() {
    local f=$work/$1.t
    [ -s "$f" ] || { echo "- - - - -"; return; }
    local n us kb cpu
    n=$(wc -l < "$f")
    us=$(cut -d' ' -f1 < "$f" | sort -n | awk -v n="$n" '
        NR == 1 { best = $1 } { a[NR] = $1 }
        END { m = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2;
              printf "%.4f %.4f", best / 1e6, m / 1e6 }')
    kb=$(cut -d' ' -f2 < "$f" | sort -n | awk -v n="$n" '
        NR == 1 { best = $1 } { a[NR] = $1 }
        END { m = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2;
              printf "%d %d", best, m }')
    cpu=$(cut -d' ' -f3 < "$f" | sort -n | awk -v n="$n" '
        { a[NR] = $1 }
        END { printf "%.2f", (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }')
    echo "$us $kb $cpu"
}

# measure WHO COMMAND: WHO is ours or ref. The reference encodes our JSON,
# so that both encode the same input.
measure() {
    local who=$1 c=$2 bin n p
    if [ "$who" = ours ]; then bin=$CRIT; n=$RUNS; p=; else bin=$CRIT_REF; n=$REF_RUNS; p=ref-; fi
    case $c in
        decode) run "$who-$c" "$n" /dev/null "$bin" decode -i "$imgs/files.img" -o "$work/${p}out.json" ;;
        show) run "$who-$c" "$n" /dev/null "$bin" show "$imgs/files.img" ;;
        x-fds) run "$who-$c" "$n" /dev/null "$bin" x "$imgs" fds ;;
        encode) run "$who-$c" "$n" /dev/null "$bin" encode -i "$work/out.json" -o "$work/${p}back.img" ;;
    esac
}

order=(decode show x-fds encode)
declare -A failed=()
notes=()

for c in "${order[@]}"; do
    echo "bench: crit $c" >&2
    if ! measure ours "$c"; then
        failed[ours-$c]=1
        notes+=("crit $c failed: $(head -c 300 "$work/ours-$c.err" | head -n1)")
    fi
    if [ -n "${CRIT_REF:-}" ]; then
        echo "bench: reference $c" >&2
        if ! measure ref "$c"; then
            failed[ref-$c]=1
            notes+=("reference $c failed: $(tail -n1 "$work/ref-$c.err")")
        fi
    fi
    if [ "$c" = encode ] && [ -z "${failed[ours-encode]:-}" ]; then
        if cmp -s "$imgs/files.img" "$work/back.img"; then
            notes+=("encode: back.img is byte-identical to files.img")
        else
            failed[ours-encode]=1
            notes+=("encode: back.img DIFFERS from files.img ($(cmp "$imgs/files.img" "$work/back.img" 2>&1 | head -n1))")
        fi
    fi
done
if [ -n "${CRIT_REF:-}" ]; then
    if [ -z "${failed[ours-decode]:-}" ] && [ -z "${failed[ref-decode]:-}" ]; then
        if cmp -s "$work/out.json" "$work/ref-out.json"; then
            notes+=("decode: out.json is byte-identical to the reference's")
        else
            notes+=("decode: out.json DIFFERS from the reference's ($(cmp "$work/out.json" "$work/ref-out.json" 2>&1 | head -n1))")
        fi
    fi
    if [ -z "${failed[ref-encode]:-}" ] && [ -f "$work/ref-back.img" ]; then
        cmp -s "$imgs/files.img" "$work/ref-back.img" ||
            notes+=("encode: the reference's back.img differs from files.img")
    fi
fi

echo
echo "crit benchmark: $(wc -c < "$imgs/files.img") bytes files.img, $RUNS runs (reference: ${CRIT_REF:+$REF_RUNS runs of }${CRIT_REF:-none})"
if [ -n "${CRIT_REF:-}" ]; then
    printf '%-8s %19s %8s %13s %19s %8s %13s %8s %9s %8s  %s\n' command "ours s best/median" "ours cpu" "ours RSS MB" \
        "ref s best/median" "ref cpu" "ref RSS MB" speedup "RSS ratio" "cpu x" target
else
    printf '%-8s %19s %8s %17s\n' command "time s best/median" "cpu s" "peak RSS MB med"
fi
all_ok=1
for c in "${order[@]}"; do
    read -r ob om okb okm oc <<< "$(stats "ours-$c")"
    mb() { [ "$1" = - ] && echo - || awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
    if [ -n "${failed[ours-$c]:-}" ]; then ours="FAILED"; else ours="$ob / $om"; fi
    if [ -z "${CRIT_REF:-}" ]; then
        printf '%-8s %19s %8s %17s\n' "$c" "$ours" "$oc" "$(mb "$okm")"
        continue
    fi
    read -r rb rm rkb rkm rc <<< "$(stats "ref-$c")"
    if [ -n "${failed[ref-$c]:-}" ]; then ref="FAILED"; else ref="$rb / $rm"; fi
    if [ -n "${failed[ours-$c]:-}${failed[ref-$c]:-}" ]; then
        sp=-; rr=-; cx=-; verdict="n/a"; all_ok=0
    else
        sp=$(awk -v r="$rm" -v o="$om" 'BEGIN { printf "%.1fx", (o > 0) ? r / o : 0 }')
        rr=$(awk -v r="$rkm" -v o="$okm" 'BEGIN { printf "%.3f", (r > 0) ? o / r : 0 }')
        # CPU times have 10 ms resolution: a run under 10 ms counts as 5 ms.
        cx=$(awk -v r="$rc" -v o="$oc" 'BEGIN { if (o < 0.01) o = 0.005; printf "%.0fx", r / o }')
        verdict=$(awk -v r="$rm" -v o="$om" -v rk="$rkm" -v ok="$okm" 'BEGIN {
            t = (o > 0 && r / o >= 50); m = (rk > 0 && ok / rk <= 0.25);
            printf "%s", (t && m) ? "met" : (!t && !m) ? "MISSED time+RSS" : !t ? "MISSED time" : "MISSED RSS" }')
        [ "$verdict" = met ] || all_ok=0
    fi
    printf '%-8s %19s %8s %13s %19s %8s %13s %8s %9s %8s  %s\n' "$c" "$ours" "$oc" "$(mb "$okb") / $(mb "$okm")" \
        "$ref" "$rc" "$(mb "$rkb") / $(mb "$rkm")" "$sp" "$rr" "$cx" "$verdict"
done
for n in "${notes[@]}"; do echo "  - $n"; done
if [ -n "${CRIT_REF:-}" ]; then
    echo "speedup: median wall time of the reference / ours; RSS ratio: median peak RSS, ours / reference;"
    echo "cpu: median user+system seconds; cpu x: the same ratio on CPU time (10 ms resolution)"
    [ $all_ok = 1 ] && echo "all targets met (>= 50x faster, <= 1/4 peak RSS)" ||
        echo "some targets missed or not measured (targets: >= 50x faster in wall time, <= 1/4 peak RSS)"
fi
# Exit non-zero only when one of our commands failed or encode did not
# round-trip.
for c in "${order[@]}"; do [ -z "${failed[ours-$c]:-}" ] || exit 1; done
exit 0
