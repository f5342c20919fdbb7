#!/usr/bin/env python3
"""Post-copy restore benchmark (issue 19): a task with MIB MiB of written
memory and a thread that ticks every millisecond, dumped, then restored
lazily by crit (crit restore --lazy-pages + crit lazy-pages) and, with
CRIU_REF, by CRIU 4.2 (its own dump, restore --lazy-pages and
lazy-pages), side by side; a plain crit restore for reference.

    [CRIU_REF=/path/to/criu] [MIB=1024] [ROUNDS=3] [DIR=/dev/shm]
    scripts/bench-lazy.py

Per round, cases interleaved, each on a fresh task (tests/programs/
ticker.c). Measured from the start of the restore command: the first
tick of the restored task (the time its ticker thread writes to a shared
file mapping, read by this script), and all memory in (the daemon's
exit; for a plain restore, the restore's). Then the task checks every
page. Prints medians.
"""
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRIT = os.path.join(ROOT, "target", "release", "crit")
CRIU = os.environ.get("CRIU_REF", "")
MIB = int(os.environ.get("MIB", "1024"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
DIR = os.environ.get("DIR", "/dev/shm")


def start(prog, tickf, result):
    out = result + ".out"
    with open(out, "w") as f:
        p = subprocess.Popen([prog, str(MIB), tickf, result], stdout=f,
                             stdin=subprocess.DEVNULL, start_new_session=True)
    t = time.time()
    while time.time() - t < 60:
        line = open(out).read().split()
        if line[:1] == ["READY"]:
            return p, int(line[1])
        time.sleep(0.02)
    sys.exit("ticker did not start")


def last_tick(tickf):
    with open(tickf, "rb") as f:
        return struct.unpack("<Q", f.read(8))[0]


def ask(pid, result):
    n = len(open(result).read().splitlines()) if os.path.exists(result) else 0
    os.kill(pid, 10)
    t = time.time()
    while time.time() - t < 60:
        lines = open(result).read().splitlines() if os.path.exists(result) else []
        if len(lines) > n:
            return lines[n]
        time.sleep(0.01)
    sys.exit(f"pid {pid} did not answer")


def listening(sock):
    t = time.time()
    while not os.path.exists(sock):
        if time.time() - t > 10:
            sys.exit("lazy-pages daemon did not listen")
        time.sleep(0.005)


def run_case(case, prog, work, tag):
    tickf = os.path.join(work, "tick-" + tag)
    result = os.path.join(work, "result-" + tag)
    images = os.path.join(work, "img-" + tag)
    os.makedirs(images)
    p, pid = start(prog, tickf, result)
    time.sleep(2)
    tool = [CRIU] if case == "criu lazy" else [CRIT]
    r = subprocess.run(tool + ["dump", "-t", str(pid), "-D", images, "--shell-job"],
                       stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    if r.returncode:
        sys.exit(f"{case} dump failed: {r.stderr.decode()[-300:]}")
    p.wait()
    daemon = None
    lazy = case != "crit plain"
    if lazy:
        daemon = subprocess.Popen(tool + ["lazy-pages", "-D", images], cwd=images,
                                  stderr=subprocess.DEVNULL)
        listening(os.path.join(images, "lazy-pages.socket"))
    before = last_tick(tickf)
    t0 = time.perf_counter()
    rst = subprocess.Popen(tool + ["restore", "-d", "-D", images, "--shell-job"]
                           + (["--lazy-pages"] if lazy else []),
                           stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    first = None
    while first is None:
        if last_tick(tickf) != before:
            first = time.perf_counter() - t0
        elif rst.poll() not in (None, 0):
            sys.exit(f"{case} restore failed: {rst.stderr.read().decode()[-300:]}")
        elif time.perf_counter() - t0 > 60:
            sys.exit(f"{case}: no tick")
        else:
            time.sleep(0.0001)  # leave the CPUs to the engines
    rst.wait()
    if daemon:
        # A plain wait (waitpid): Popen.wait with a timeout polls with
        # sleeps of up to 50 ms, which would add to the time measured.
        watchdog = threading.Timer(120, daemon.kill)
        watchdog.start()
        rc = daemon.wait()
        watchdog.cancel()
        if rc:
            sys.exit(f"{case}: the lazy-pages daemon failed")
    all_in = time.perf_counter() - t0
    a = ask(pid, result)
    os.kill(pid, 9)
    if not a.startswith("OK"):
        sys.exit(f"{case}: {a}")
    subprocess.run(["rm", "-rf", images, tickf])
    return first, all_in


def main():
    if os.geteuid() != 0:
        sys.exit("needs root")
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="bench-lazy-", dir=DIR)
    prog = os.path.join(work, "ticker")
    subprocess.run(["cc", "-O2", "-pthread", "-o", prog,
                    os.path.join(ROOT, "tests/programs/ticker.c")], check=True)
    cases = (["criu lazy"] if CRIU else []) + ["crit lazy", "crit plain"]
    got = {c: [] for c in cases}
    for rnd in range(ROUNDS):
        for c in cases:
            first, all_in = run_case(c, prog, work, f"{rnd}-{c.replace(' ', '-')}")
            got[c].append((first, all_in))
            print(f"round {rnd} {c}: first tick {first * 1000:.1f} ms, "
                  f"all in {all_in:.3f} s", file=sys.stderr)
    print(f"\n{MIB} MiB, images in {DIR}, medians of {ROUNDS}; every page checked by the task")
    print("| restore | first tick | all memory in |")
    print("| --- | --- | --- |")
    for c in cases:
        f = statistics.median(x[0] for x in got[c])
        a = statistics.median(x[1] for x in got[c])
        print(f"| {c} | {f * 1000:.1f} ms | {a:.3f} s |")
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
