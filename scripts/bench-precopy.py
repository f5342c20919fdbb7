#!/usr/bin/env python3
"""The live-dump benchmark (issue 15): how long a task stalls while it is
dumped with --leave-running, CRIU 4.2's plain dump against `crit dump
--pre-copy`.

    [CRIU_REF=/path/to/criu] [MIB=1024] [HOT=64] [RATES=2000,8000,32000]
    [ROUNDS=3] scripts/bench-precopy.py

The task is tests/programs/gens.c: MIB MiB of written memory, rewriting
pages of its first HOT MiB at RATE pages a second, with a thread that
ticks every half millisecond and records its longest gap (the stall).
Per rate and round, engines interleaved, each dump gets a fresh task
(started, settled 2 s, stall reset, dumped with -R, then asked). Each
crit image set is then restored by crit (the first round also by CRIU)
and the restored task checks every page against its generation table.
Prints medians per rate: longest stall, dump wall time, and the ratio
CRIU/crit of the stalls. Needs root and cc; without CRIU_REF only crit
is measured.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRIT = os.path.join(ROOT, "target", "release", "crit")
CRIU = os.environ.get("CRIU_REF", "")
MIB = int(os.environ.get("MIB", "1024"))
HOT = int(os.environ.get("HOT", "64"))
RATES = [int(r) for r in os.environ.get("RATES", "2000,8000,32000").split(",")]
ROUNDS = int(os.environ.get("ROUNDS", "3"))


def start(prog, rate, result):
    # Output to a file: no pipe to this script for the engines to handle.
    out = result + ".out"
    with open(out, "w") as f:
        p = subprocess.Popen([prog, str(MIB), str(HOT), str(rate), result],
                             stdout=f, stdin=subprocess.DEVNULL, start_new_session=True)
    t = time.time()
    while time.time() - t < 30:
        line = open(out).read().split()
        if line[:1] == ["READY"]:
            return p, int(line[1])
        time.sleep(0.02)
    sys.exit("gens did not start")


def ask(pid, result):
    n = len(open(result).read().splitlines()) if os.path.exists(result) else 0
    os.kill(pid, 10)  # SIGUSR1
    t = time.time()
    while time.time() - t < 20:
        lines = open(result).read().splitlines() if os.path.exists(result) else []
        if len(lines) > n:
            return lines[n]
        time.sleep(0.02)
    sys.exit(f"pid {pid} did not answer")


def stop(p, pid):
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
    if p:
        p.wait()
    t = time.time()
    while os.path.exists(f"/proc/{pid}") and time.time() - t < 10:
        time.sleep(0.01)


def criu_cmd(args):
    # CRIU refuses to run with fds 10 and 251 open (its service fds):
    # subprocess closes every fd above 2 in the child (close_fds).
    return [CRIU] + args


def dump(engine, pid, images):
    os.makedirs(images, exist_ok=True)
    if engine == "criu":
        cmd = criu_cmd(["dump", "-t", str(pid), "-D", images, "-R", "--shell-job"])
    else:
        cmd = [CRIT, "dump", "-t", str(pid), "-D", images, "-R", "--pre-copy", "--shell-job"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    if r.returncode:
        sys.exit(f"{engine} dump failed: {r.stderr.decode()[-400:]}")
    return dt


def restore_check(engine, images, pid, result):
    for _ in range(25):
        if engine == "criu":
            r = subprocess.run(criu_cmd(["restore", "-d", "-D", images, "--shell-job"]),
                               stderr=subprocess.PIPE)
        else:
            r = subprocess.run([CRIT, "restore", "-d", "--shell-job", "-D", images],
                               stderr=subprocess.PIPE)
        if r.returncode == 0:
            break
        time.sleep(0.2)  # a pid just freed may still be held by a slow reaper
    else:
        sys.exit(f"{engine} restore failed: {r.stderr.decode()[-400:]}")
    a = ask(pid, result)
    stop(None, pid)
    if not a.startswith("OK"):
        sys.exit(f"restored by {engine}: {a}")
    return a


def main():
    if os.geteuid() != 0:
        sys.exit("needs root")
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="bench-precopy-", dir="/var/tmp")
    prog = os.path.join(work, "gens")
    subprocess.run(["cc", "-O2", "-pthread", "-o", prog,
                    os.path.join(ROOT, "tests/programs/gens.c")], check=True)
    engines = (["criu"] if CRIU else []) + ["crit"]
    rows = []
    for rate in RATES:
        stall = {e: [] for e in engines}
        wall = {e: [] for e in engines}
        for rnd in range(ROUNDS):
            for e in engines:
                result = os.path.join(work, f"result-{rate}-{rnd}-{e}")
                images = os.path.join(work, f"img-{rate}-{rnd}-{e}")
                p, pid = start(prog, rate, result)
                time.sleep(2)
                os.kill(pid, 12)  # SIGUSR2: forget the stall so far
                time.sleep(0.3)
                dt = dump(e, pid, images)
                a = ask(pid, result).split()
                if a[0] != "OK":
                    sys.exit(f"after the {e} dump the task says {a}")
                stall[e].append(int(a[3]) / 1000.0)
                wall[e].append(dt)
                stop(p, pid)
                if e == "crit":
                    restore_check("crit", images, pid, result)
                    if CRIU and rnd == 0:
                        restore_check("criu", images, pid, result)
                subprocess.run(["rm", "-rf", images])
                print(f"rate {rate} round {rnd} {e}: stall {stall[e][-1]:.1f} ms, "
                      f"dump {dt:.2f} s", file=sys.stderr)
        rows.append((rate, {e: statistics.median(stall[e]) for e in engines},
                     {e: statistics.median(wall[e]) for e in engines}))
    print(f"\n{MIB} MiB, rewriting {HOT} MiB; medians of {ROUNDS}; "
          f"every crit image restored and checked page by page")
    head = "| pages/s |" + "".join(f" {e} stall | {e} dump |" for e in engines)
    if CRIU:
        head += " stall CRIU/crit |"
    print(head)
    print("|" + " --- |" * (1 + 2 * len(engines) + (1 if CRIU else 0)))
    for rate, st, wl in rows:
        line = f"| {rate} |" + "".join(f" {st[e]:.1f} ms | {wl[e]:.2f} s |" for e in engines)
        if CRIU:
            line += f" {st['criu'] / max(st['crit'], 0.001):.0f}x |"
        print(line)
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
