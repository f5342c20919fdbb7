#!/usr/bin/env python3
"""The scale benchmark: crit's dump and restore against CRIU's, side by
side, on trees of many tasks, one task with much memory and one task with
many descriptors (tests/programs/scale.c; each restored task checks its
own memory and descriptors).

    CRIU_REF=/path/to/criu [ROUNDS=3] [CASES=tree16,mem1g] scripts/bench-scale.py

Each case runs a warm-up round, then ROUNDS rounds; in each round the
engines take turns (which one goes first alternates), each on a fresh
tree: start it, dump it, restore it detached, check it, kill it
(scripts/bench-scale-runner.c). Images go to a tmpfs (/dev/shm) up to
4 GiB of memory and to BENCH_DISK (default /var/tmp) above. Right
before each dump and each restore the runner touches and frees fresh
memory (scripts/bench-warm.h), so that neither engine meets memory the
VM's host took back; BENCH_WARM=0 leaves that out. Without CRIU_REF
only crit runs.

Prints, per case and engine, the median and minimum of wall and CPU time
of dump and restore, the ratios CRIU/crit of the medians, how long the
whole machine was busy during each engine's dump (median; /proc/stat, so
in 1/100 s: it also counts the dumped task's own work, such as freeing
its memory once killed, which rusage gives to no engine unless crit
takes it on), crit's peak RSS, and how cost grows (ms per task, s per
GiB, us per fd); writes the table to docs/bench-scale.md (keeping its
hand-written "Reading it" part) and the curves to docs/bench-scale.svg.

Needs root, cc, and python3 (standard library only).
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1
GIB = 1024
# Images up to this size go to a tmpfs: the task, its images and the
# restored task (12 GiB at 4 GiB) fit in memory; 8 GiB would not.
TMPFS_UP_TO = 4 * GIB

# name, tasks, MiB per task, descriptors of the root, axis, x value
GRID = [
    ("tree1", 1, 4, 16, "tasks", 1),
    ("tree16", 16, 4, 16, "tasks", 16),
    ("tree128", 128, 4, 16, "tasks", 128),
    ("tree512", 512, 4, 16, "tasks", 512),
    ("tree2048", 2048, 1, 16, "tasks", 2048),
    ("mem256m", 1, 256 * MIB, 16, "GiB", 0.25),
    ("mem1g", 1, GIB, 16, "GiB", 1),
    ("mem4g", 1, 4 * GIB, 16, "GiB", 4),
    ("mem8g", 1, 8 * GIB, 16, "GiB", 8),
    ("fd100", 1, 4, 100, "fds", 100),
    ("fd1000", 1, 4, 1000, "fds", 1000),
    ("fd10000", 1, 4, 10000, "fds", 10000),
]


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def build(work):
    sh("cargo", "build", "--release", "--bin", "crit", cwd=ROOT, stdout=subprocess.DEVNULL)
    crit = os.path.join(work, "crit")
    shutil.copy(os.path.join(ROOT, "target/release/crit"), crit)
    scale = os.path.join(work, "scale")
    sh("cc", "-O2", "-o", scale, os.path.join(ROOT, "tests/programs/scale.c"))
    runner = os.path.join(work, "runner")
    sh("cc", "-O2", "-o", runner, os.path.join(ROOT, "scripts/bench-scale-runner.c"))
    return crit, scale, runner


def engines(crit):
    e = {"crit": (
        [crit, "dump", "-t", "{pid}", "-D", "{dir}"],
        [crit, "restore", "-d", "-D", "{dir}"],
    )}
    criu = os.environ.get("CRIU_REF")
    if criu:
        e["criu"] = (
            [criu, "dump", "-t", "{pid}", "-D", "{dir}", "-v0"],
            [criu, "restore", "-d", "-D", "{dir}", "-v0"],
        )
    return e


def measure(runner, scale, case, eng, work):
    name, tasks, mib, fds = case[:4]
    base = "/dev/shm" if tasks * mib <= TMPFS_UP_TO else os.environ.get("BENCH_DISK", "/var/tmp")
    d = tempfile.mkdtemp(prefix=f"crit-scale-{name}-{eng[0]}-", dir=base)
    try:
        dump, restore = eng[1]
        out = subprocess.run(
            [runner, scale, str(tasks), str(mib), str(fds), d, *dump, "--", *restore],
            capture_output=True, text=True,
        )
        f = out.stdout.split()
        if out.returncode != 0 or len(f) < 15:
            raise RuntimeError(f"{name} {eng[0]}: {out.stdout.strip()} {out.stderr.strip()}")
        return {
            "dump_wall": float(f[1]), "dump_cpu": float(f[2]), "dump_rss": int(f[3]),
            "restore_wall": float(f[5]), "restore_cpu": float(f[6]), "restore_rss": int(f[7]),
            "dump_machine": float(f[13]), "restore_machine": float(f[14]),
        }
    finally:
        shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(d + ".result", ignore_errors=True)
        try:
            os.unlink(d + ".result")
        except OSError:
            pass


def measure_retrying(runner, scale, case, eng):
    # A restore needs the dumped pids free: another process may take one
    # meanwhile (this is a shared machine). Such a round is run again,
    # and says so.
    for attempt in range(3):
        try:
            return measure(runner, scale, case, eng, None)
        except RuntimeError as e:
            print(f"bench-scale: {'gave up' if attempt == 2 else 'retrying'}: {e}",
                  file=sys.stderr, flush=True)
    # An engine that cannot do a case (CRIU at 10,000 fds) is shown so.
    return None


def run_grid(runner, scale, engs, cases, rounds):
    results = {}
    for case in cases:
        name = case[0]
        per = {e: [] for e in engs}
        for r in range(rounds + 1):
            order = list(engs.items())
            if r % 2:
                order.reverse()
            for eng in order:
                m = measure_retrying(runner, scale, case, eng)
                if r > 0 and m is not None:
                    per[eng[0]].append(m)
            print(f"bench-scale: {name} round {r}{' (warm-up)' if r == 0 else ''} done",
                  file=sys.stderr)
        results[name] = per
    return results


def stats(ms, key):
    v = [m[key] for m in ms]
    return statistics.median(v), min(v)


def table(cases, results, engs):
    lines = []
    head = "| case | " + " | ".join(
        f"{e} dump wall | {e} dump CPU | {e} restore wall | {e} restore CPU" for e in engs
    )
    if "criu" in engs:
        head += " | dump x | restore x | dump CPU crit/criu | machine busy in dump, crit / criu"
    head += " | crit peak RSS dump / restore |"
    lines.append(head)
    lines.append("|" + " --- |" * (head.count("|") - 1))
    for case in cases:
        name = case[0]
        per = results[name]
        row = [name]
        for e in engs:
            for k in ("dump_wall", "dump_cpu", "restore_wall", "restore_cpu"):
                if not per[e]:
                    row.append("fails")
                    continue
                med, mn = stats(per[e], k)
                row.append(f"{med:.3f} ({mn:.3f})")
        if "criu" in engs and not (per["criu"] and per["crit"]):
            row += ["-", "-", "-", "-"]
        elif "criu" in engs:
            dx = stats(per["criu"], "dump_wall")[0] / stats(per["crit"], "dump_wall")[0]
            rx = stats(per["criu"], "restore_wall")[0] / stats(per["crit"], "restore_wall")[0]
            cx = stats(per["crit"], "dump_cpu")[0] / stats(per["criu"], "dump_cpu")[0]
            mc = stats(per["crit"], "dump_machine")[0]
            mu = stats(per["criu"], "dump_machine")[0]
            row += [f"{dx:.2f}x", f"{rx:.2f}x", f"{cx:.2f}", f"{mc:.2f} / {mu:.2f}"]
        rss_d = max((m["dump_rss"] for m in per["crit"]), default=0) / 1024
        rss_r = max((m["restore_rss"] for m in per["crit"]), default=0) / 1024
        row.append(f"{rss_d:.0f} / {rss_r:.0f} MiB")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def growth(cases, results, engs):
    """Cost per unit, from the largest and smallest point of each axis."""
    out = []
    for axis, unit, scale_to in (("tasks", "ms per task", 1e3), ("GiB", "s per GiB", 1),
                                 ("fds", "us per fd", 1e6)):
        for e in engs:
            pts = [c for c in cases if c[4] == axis and results[c[0]][e]]
            if len(pts) < 2:
                continue
            lo, hi = pts[0], pts[-1]
            for k in ("dump_wall", "restore_wall"):
                a = stats(results[lo[0]][e], k)[0]
                b = stats(results[hi[0]][e], k)[0]
                per = (b - a) / (hi[5] - lo[5]) * scale_to
                out.append(f"- {e} {k.replace('_', ' ')}: {per:.3f} {unit}")
    return "\n".join(out)


def reading(md):
    """The hand-written part of the old page (from "Reading it" to the
    picture), kept: it explains figures the next run is expected to
    repeat, and is revised by hand when they change."""
    try:
        with open(md) as f:
            old = f.read()
    except OSError:
        return ""
    start = old.find("\nReading it")
    if start < 0:
        return ""
    end = old.find("![wall time by size]", start)
    return old[start + 1:end if end >= 0 else len(old)]


def svg(cases, results, engs, path):
    """Wall time against size, one panel per axis, log-log, one line per
    engine and operation."""
    axes = [a for a in ("tasks", "GiB", "fds") if any(c[4] == a for c in cases)]
    w, h, pad = 360, 260, 50
    colors = {("crit", "dump"): "#1f77b4", ("crit", "restore"): "#2ca02c",
              ("criu", "dump"): "#ff7f0e", ("criu", "restore"): "#d62728"}
    import math
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w * len(axes)}" height="{h + 40}" '
             'font-family="sans-serif" font-size="11">']
    for i, axis in enumerate(axes):
        pts = [c for c in cases if c[4] == axis]
        xs = [c[5] for c in pts]
        ys = [stats(results[c[0]][e], f"{op}_wall")[0] for c in pts for e in engs
              for op in ("dump", "restore") if results[c[0]][e]]
        lx = (math.log10(min(xs)), math.log10(max(xs)) or 1)
        ly = (math.log10(min(ys)), math.log10(max(ys)))
        ox = i * w

        def px(x):
            span = (lx[1] - lx[0]) or 1
            return ox + pad + (math.log10(x) - lx[0]) / span * (w - 2 * pad)

        def py(y):
            span = (ly[1] - ly[0]) or 1
            return h - pad + 20 - (math.log10(y) - ly[0]) / span * (h - 2 * pad)

        parts.append(f'<text x="{ox + w / 2}" y="14" text-anchor="middle">wall time (s) by {axis}</text>')
        parts.append(f'<line x1="{ox + pad}" y1="{h - pad + 20}" x2="{ox + w - pad}" y2="{h - pad + 20}" stroke="black"/>')
        parts.append(f'<line x1="{ox + pad}" y1="30" x2="{ox + pad}" y2="{h - pad + 20}" stroke="black"/>')
        for x in xs:
            parts.append(f'<text x="{px(x):.1f}" y="{h - pad + 34}" text-anchor="middle">{x:g}</text>')
        for y in (min(ys), max(ys)):
            parts.append(f'<text x="{ox + pad - 4}" y="{py(y):.1f}" text-anchor="end">{y:.3g}</text>')
        for e in engs:
            for op in ("dump", "restore"):
                line = " ".join(f"{px(c[5]):.1f},{py(stats(results[c[0]][e], op + '_wall')[0]):.1f}"
                                for c in pts if results[c[0]][e])
                parts.append(f'<polyline points="{line}" fill="none" stroke="{colors[(e, op)]}" stroke-width="2"/>')
    lx0 = 10
    for (e, op), col in colors.items():
        if e in engs:
            parts.append(f'<rect x="{lx0}" y="{h + 22}" width="10" height="10" fill="{col}"/>'
                         f'<text x="{lx0 + 14}" y="{h + 31}">{e} {op}</text>')
            lx0 += 110
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def main():
    if os.geteuid() != 0:
        sys.exit("bench-scale: run as root")
    rounds = int(os.environ.get("ROUNDS", "3"))
    want = os.environ.get("CASES")
    cases = [c for c in GRID if not want or c[0] in want.split(",")]
    work = tempfile.mkdtemp(prefix="crit-bench-scale-")
    crit, scale, runner = build(work)
    engs = engines(crit)
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                         capture_output=True, text=True).stdout.strip()
    t0 = time.time()
    results = run_grid(runner, scale, engs, cases, rounds)
    when = time.strftime("%Y-%m-%d")
    body = (f"Measured {when}, crit {rev}, {rounds} rounds after a warm-up, engines "
            f"interleaved; median (minimum) in seconds; {os.cpu_count()} CPUs; "
            f"{time.time() - t0:.0f} s in all.\n\n"
            + table(cases, results, list(engs)) + "\n\nHow cost grows:\n\n"
            + growth(cases, results, list(engs)) + "\n")
    print(body)
    docs = os.path.join(ROOT, "docs")
    md = os.path.join(docs, "bench-scale.md")
    kept = reading(md)  # before the page is opened for writing, which empties it
    with open(md, "w") as f:
        f.write("# Scale benchmark\n\n`scripts/bench-scale.py`; see its header.\n\n" + body
                + "\n" + kept + "![wall time by size](bench-scale.svg)\n")
    svg(cases, results, list(engs), os.path.join(docs, "bench-scale.svg"))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
