#!/usr/bin/env python3
"""The memory search benchmark: `crit x DIR mem PID --search` over the
pages of one task (tests/programs/needles.c: MIB MiB of written memory,
default 1024, with a string every 64 MiB), dumped by crit.

    [MIB=1024] [ROUNDS=5] scripts/bench-x-mem.py

Searches the images dir, and the same images packed as podman packs them
(checkpoint/ in a tar and in a tar.zst, made with tar and zstd), ROUNDS
times each after a warm-up, the sources interleaved. Prints, per source,
the median and minimum wall time, the speed in GB/s of pages searched
(median), crit's peak RSS, and checks every run found every string.
Needs root, cc, tar and zstd.
"""
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRIT = os.path.join(ROOT, "target", "release", "crit")
MIB = int(os.environ.get("MIB", "1024"))
ROUNDS = int(os.environ.get("ROUNDS", "5"))


def main():
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="bench-x-mem-", dir="/var/tmp")
    prog = os.path.join(work, "needles")
    subprocess.run(["cc", "-O2", "-o", prog, os.path.join(ROOT, "tests/programs/needles.c")], check=True)
    p = subprocess.Popen([prog, str(MIB)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    ready = p.stdout.readline().split()
    pid = ready[1].decode()
    imgs = os.path.join(work, "checkpoint")
    subprocess.run([CRIT, "dump", "-t", pid, "-D", imgs], check=True)
    p.wait()
    pages = sum(os.path.getsize(os.path.join(imgs, f)) for f in os.listdir(imgs) if f.startswith("pages-"))
    tar = os.path.join(work, "ck.tar")
    subprocess.run(["tar", "-C", work, "-cf", tar, "checkpoint"], check=True)
    subprocess.run(["zstd", "-q", "-1", "-T0", "-f", tar, "-o", tar + ".zst"], check=True)
    want = MIB // 64
    sources = [("dir", imgs), ("tar", tar), ("tar.zst", tar + ".zst")]
    times = {n: [] for n, _ in sources}
    peak = {n: 0 for n, _ in sources}
    for r in range(ROUNDS + 1):
        for name, src in sources:
            t0 = time.perf_counter()
            o = subprocess.run([CRIT, "x", src, "mem", pid, "--search", "CRIT-NEEDLE"],
                               stdout=subprocess.PIPE, check=True)
            dt = time.perf_counter() - t0
            ru = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            found = o.stdout.decode().strip().splitlines()[-1]
            if found != f"{want} matches":
                sys.exit(f"{name}: {found}, want {want} matches")
            if r:
                times[name].append(dt)
            # ru_maxrss of children is a running maximum; measured alone below.
    for name, src in sources:
        py = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        o = subprocess.run([sys.executable, "-c", py, CRIT, "x", src, "mem", pid, "--search", "CRIT-NEEDLE"],
                           stdout=subprocess.PIPE, check=True)
        peak[name] = int(o.stdout) // 1024
    print(f"pages: {pages / 2**20:.0f} MiB; {ROUNDS} rounds after a warm-up; every run found {want} matches")
    print(f"{'source':<8} {'median s':>9} {'min s':>7} {'GB/s':>6} {'peak RSS MiB':>13}")
    for name, _ in sources:
        med = statistics.median(times[name])
        print(f"{name:<8} {med:>9.3f} {min(times[name]):>7.3f} {pages / med / 1e9:>6.2f} {peak[name]:>13}")
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
