#!/usr/bin/env python3
"""Dump to a page server against a plain dump (issue 19), crit and, with
CRIU_REF, CRIU 4.2 side by side.

    [CRIU_REF=/path/to/criu] [MIB=1024] [ROUNDS=3] [DIR=/var/tmp]
    scripts/bench-pageserver.py

The task is tests/programs/gens.c with MIB MiB of written memory. Per
round, cases interleaved, each dump gets a fresh task and kills it:
a plain dump into DIR, and a dump whose pages go over 127.0.0.1 to a
page server of the same engine writing into another directory of DIR.
The server's images are then merged into the dump's, and the set is
restored by crit and checked page by page by the task itself. Prints
the median dump time of each case (the dump command, from start to
exit; a page server's session ends before its dump exits).
"""
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRIT = os.path.join(ROOT, "target", "release", "crit")
CRIU = os.environ.get("CRIU_REF", "")
MIB = int(os.environ.get("MIB", "1024"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
DIR = os.environ.get("DIR", "/var/tmp")


def start(prog, result):
    out = result + ".out"
    with open(out, "w") as f:
        p = subprocess.Popen([prog, str(MIB), "0", "0", result], stdout=f,
                             stdin=subprocess.DEVNULL, start_new_session=True)
    t = time.time()
    while time.time() - t < 60:
        line = open(out).read().split()
        if line[:1] == ["READY"]:
            return p, int(line[1])
        time.sleep(0.02)
    sys.exit("gens did not start")


def ask(pid, result):
    n = len(open(result).read().splitlines()) if os.path.exists(result) else 0
    os.kill(pid, 10)
    t = time.time()
    while time.time() - t < 30:
        lines = open(result).read().splitlines() if os.path.exists(result) else []
        if len(lines) > n:
            return lines[n]
        time.sleep(0.02)
    sys.exit(f"pid {pid} did not answer")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def listening(port):
    # /proc/net/tcp: a LISTEN (0A) socket on the port, without connecting
    # (a page server takes one connection only).
    hexport = f":{port:04X}"
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        f = line.split()
        if f[1].endswith(hexport) and f[3] == "0A":
            return True
    return False


def run_case(engine, remote, pid, images, server_dir):
    os.makedirs(images)
    tool = [CRIU] if engine == "criu" else [CRIT]
    server = None
    extra = []
    if remote:
        os.makedirs(server_dir)
        port = free_port()
        server = subprocess.Popen(tool + ["page-server", "-D", server_dir, "--port", str(port)],
                                  stderr=subprocess.PIPE)
        t = time.time()
        while not listening(port):
            if time.time() - t > 10:
                sys.exit(f"{engine} page-server did not listen")
            time.sleep(0.01)
        extra = ["--page-server", "--address", "127.0.0.1", "--port", str(port)]
    t0 = time.perf_counter()
    r = subprocess.run(tool + ["dump", "-t", str(pid), "-D", images, "--shell-job"] + extra,
                       stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    if r.returncode:
        sys.exit(f"{engine} dump failed: {r.stderr.decode()[-400:]}")
    if server and server.wait(30):
        sys.exit(f"{engine} page-server failed: {server.stderr.read().decode()[-400:]}")
    if remote:
        for n in os.listdir(server_dir):
            if n.endswith(".img"):
                os.rename(os.path.join(server_dir, n), os.path.join(images, n))
    return dt


def restore_check(images, pid, result):
    for _ in range(25):
        r = subprocess.run([CRIT, "restore", "-d", "--shell-job", "-D", images],
                           stderr=subprocess.PIPE)
        if r.returncode == 0:
            break
        time.sleep(0.2)
    else:
        sys.exit(f"restore failed: {r.stderr.decode()[-400:]}")
    a = ask(pid, result)
    os.kill(pid, 9)
    if not a.startswith("OK"):
        sys.exit(f"restored: {a}")


def main():
    if os.geteuid() != 0:
        sys.exit("needs root")
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="bench-pageserver-", dir=DIR)
    prog = os.path.join(work, "gens")
    subprocess.run(["cc", "-O2", "-pthread", "-o", prog,
                    os.path.join(ROOT, "tests/programs/gens.c")], check=True)
    cases = [(e, r) for e in (["criu"] if CRIU else []) + ["crit"] for r in (False, True)]
    times = {c: [] for c in cases}
    for rnd in range(ROUNDS):
        for c in cases:
            e, remote = c
            tag = f"{rnd}-{e}-{'ps' if remote else 'plain'}"
            result = os.path.join(work, "result-" + tag)
            images = os.path.join(work, "img-" + tag)
            p, pid = start(prog, result)
            time.sleep(2)
            dt = run_case(e, remote, pid, images, os.path.join(work, "srv-" + tag))
            p.wait()
            times[c].append(dt)
            restore_check(images, pid, result)
            subprocess.run(["rm", "-rf", images, os.path.join(work, "srv-" + tag)])
            print(f"round {rnd} {e} {'page server' if remote else 'plain'}: {dt:.3f} s",
                  file=sys.stderr)
    print(f"\n{MIB} MiB, images in {DIR}, medians of {ROUNDS}; every set restored by crit "
          f"and checked page by page")
    print("| engine | plain dump | dump to a page server |")
    print("| --- | --- | --- |")
    for e in (["criu"] if CRIU else []) + ["crit"]:
        print(f"| {e} | {statistics.median(times[(e, False)]):.3f} s | "
              f"{statistics.median(times[(e, True)]):.3f} s |")
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
