#!/usr/bin/env python3
"""Noisy neighbour (issue 11): what one session's attacks cost another.

Starts `levain serve`, opens a victim session and an attacker session,
and measures the victim's short runs (`/bin/true`, `wait: true`, one at a
time, submit to answer) twice in one invocation: with the attacker idle,
then while the attacker
  - floods the run queue (--flood runs of `sleep 2`),
  - writes a flood of output (`head -c 2G /dev/zero`, cut at max_output),
  - and, in its jail, calls the built-in tools through the in-jail MCP
    endpoint: glob with four `**` over a deep tree and 16 parallel
    read_file of a 64 MiB file (benchmarks/noisy/attack.py).
Prints p50/p99 of both and their ratio (target: within 1.5x), and the
supervisor's RSS before and at the end of the attack.

    benchmarks/noisy_neighbour.py [--levain .build/release/levain] [--n 200] [--flood 200] [--per-session N]
"""
import argparse
import json
import os
import subprocess
import tempfile
import threading
import time

from bench_support import ROOT, UnixHTTP, api, start_serve, stop


def pct(xs, p):
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(len(xs) * p))], 3)


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def victim_runs(sock, session, n):
    conn = UnixHTTP(sock)
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        status, r = api(sock, "POST", f"/v1/sessions/{session}/runs", {"argv": ["/bin/true"], "wait": True}, conn=conn)
        lat.append((time.perf_counter() - t) * 1000)
        if status != 201 or r.get("status") != "succeeded":
            raise SystemExit(f"victim run: {status} {r}")
    return lat


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--levain", default=os.path.join(ROOT, ".build/release/levain"))
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--flood", type=int, default=200)
    ap.add_argument("--per-session", type=int, default=0, help="[queue] per_session (0: not set)")
    a = ap.parse_args()
    venv = subprocess.run([os.path.join(ROOT, "Tools/python-venv.sh")], capture_output=True, text=True, check=True).stdout.split()[-1]
    work = tempfile.mkdtemp(prefix="levain-bench-noisy-")
    serve = None
    try:
        queue = f"\n[queue]\nper_session = {a.per_session}\n" if a.per_session else ""
        serve, sock = start_serve(a.levain, work, queue, dict(os.environ))
        _, victim = api(sock, "POST", "/v1/sessions", {})
        _, attacker = api(sock, "POST", "/v1/sessions", {"binds": {"ro": [venv, os.path.join(ROOT, "benchmarks/noisy") + ":/bench"]}})
        victim, attacker = victim["id"], attacker["id"]
        victim_runs(sock, victim, 20)  # warm-up
        idle = victim_runs(sock, victim, a.n)
        rss_before = rss_kb(serve.pid)

        # The attacker's tool calls run for as long as the victim measures.
        seconds = max(10.0, sum(idle) / 1000 * 4)
        status, tool_run = api(sock, "POST", f"/v1/sessions/{attacker}/runs",
                               {"argv": [venv + "/bin/python", "/bench/attack.py", str(seconds)], "timeout": seconds + 120})
        time.sleep(3)  # the tree and the big file are being made
        for _ in range(a.flood):
            api(sock, "POST", f"/v1/sessions/{attacker}/runs", {"argv": ["/bin/sleep", "2"]})
        api(sock, "POST", f"/v1/sessions/{attacker}/runs", {"command": "head -c 2G /dev/zero"})
        peak = [rss_before]
        stop_sampling = threading.Event()

        def sample():
            while not stop_sampling.is_set():
                peak[0] = max(peak[0], rss_kb(serve.pid))
                time.sleep(0.1)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        busy = victim_runs(sock, victim, a.n)
        stop_sampling.set()
        sampler.join()
        _, done = api(sock, "POST", f"/v1/runs/{tool_run['id']}/wait?timeout={seconds + 120}")
        _, out = api(sock, "GET", f"/v1/runs/{tool_run['id']}/output/stdout?follow=false")

        i50, i99, b50, b99 = pct(idle, .5), pct(idle, .99), pct(busy, .5), pct(busy, .99)
        print(f"victim, attacker idle:     p50 {i50} ms, p99 {i99} ms ({a.n} runs)")
        print(f"victim, attacker attacking: p50 {b50} ms, p99 {b99} ms")
        print(f"ratio: p50 {b50 / i50:.2f}x, p99 {b99 / i99:.2f}x (target: within 1.5x)")
        print(f"supervisor RSS: {rss_before // 1024} MiB before, {peak[0] // 1024} MiB at most during the attack")
        print(f"attacker's tool calls: {out.strip() if isinstance(out, str) else out} (run {done.get('status')})")
    finally:
        stop(serve, None, work)


if __name__ == "__main__":
    main()
