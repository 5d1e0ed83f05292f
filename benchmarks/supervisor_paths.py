#!/usr/bin/env python3
"""Sessions and jails through `levain serve`, against references measured
in the same invocation.

Starts `levain serve` (its own socket and state directory) and measures:

1. remote run: `levain --connect unix:SOCK run -- /bin/true` (a new
   session, hence a new jail, per run: create, run, close), request to
   exit, interleaved with `bwrap ... /bin/true` (a bare spawn); with the
   default warm pool;
2. session create from the warm pool: POST /v1/sessions to its 201, once
   the pool is full again (a warm jail ready before the request);
3. session create cold (a second `levain serve` with `[warm_pool]
   default = 0`): POST /v1/sessions until the jail and its harness are
   ready (the 201), each closed again; first with no other session, then
   with HELD idle sessions open;
4. idle sessions held: opens sessions until HOLD are open or the
   supervisor refuses one; the supervisor's RSS and the time it took
   (each idle session holds 9 descriptors: serve's open-files limit
   bounds how many fit).

    benchmarks/supervisor_paths.py [--levain .build/release/levain] [--runs 100]
        [--creates 60] [--held 500] [--hold 2000] [--json FILE]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from bench_support import ROOT, UnixHTTP, api, start_serve, stop
from one_shot import bwrap_cmd, percentile


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def timed(cmd, env=None):
    t = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    ms = (time.perf_counter() - t) * 1000
    if r.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({r.returncode}): {r.stderr.decode(errors='replace')[:500]}")
    return ms


def create_ms(sock, conn):
    t = time.perf_counter()
    status, s = api(sock, "POST", "/v1/sessions", {}, conn=conn)
    ms = (time.perf_counter() - t) * 1000
    if status != 201:
        raise SystemExit(f"POST /v1/sessions: {status} {s}")
    return ms, s["id"]


def creates(sock, n):
    conn = UnixHTTP(sock)
    xs = []
    for _ in range(n):
        ms, sid = create_ms(sock, conn)
        xs.append(ms)
        api(sock, "DELETE", f"/v1/sessions/{sid}", conn=conn)
    return xs


def pool_ready(sock, conn):
    _, h = api(sock, "GET", "/v1/health", conn=conn)
    p = h.get("warm_pools", {}).get("default", {})
    return p.get("ready", 0) >= p.get("size", 1)


def warm_creates(sock, n):
    """Creates with the pool full before each; (times, how many were warm)."""
    conn = UnixHTTP(sock)
    xs, warm = [], 0
    for _ in range(n):
        for _ in range(500):
            if pool_ready(sock, conn):
                break
            time.sleep(0.01)
        ms, sid = create_ms(sock, conn)
        xs.append(ms)
        _, events = api(sock, "GET", f"/v1/log/events?session={sid}", conn=conn)
        warm += any(e["type"] == "session.opened" and e["payload"].get("warm") for e in events["events"])
        api(sock, "DELETE", f"/v1/sessions/{sid}", conn=conn)
    return xs, warm


def summary(xs):
    return {"p50_ms": round(percentile(xs, 0.5), 3), "p95_ms": round(percentile(xs, 0.95), 3), "n": len(xs)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--levain", default=os.path.join(ROOT, ".build/release/levain"))
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--creates", type=int, default=60)
    ap.add_argument("--held", type=int, default=500)
    ap.add_argument("--hold", type=int, default=2000)
    ap.add_argument("--json")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    work = tempfile.mkdtemp(prefix="levain-bench-paths-")
    serve = None
    figures = {}
    try:
        serve, sock = start_serve(a.levain, work, "[warm_pool]\ndefault = 2\n", dict(os.environ))
        env = dict(os.environ, LEVAIN_CONNECT="unix:" + sock)
        remote = [os.path.abspath(a.levain), "run", "--", "/bin/true"]
        bwrap = bwrap_cmd()
        lv, bw = [], []
        for i in range(a.runs + 10):
            x, y = timed(remote, env), timed(bwrap)
            if i >= 10:
                lv.append(x)
                bw.append(y)
        figures["remote_run"] = {"levain": summary(lv), "bwrap": summary(bw),
                                 "ratio_p50": round(percentile(lv, 0.5) / percentile(bw, 0.5), 3)}
        print(f"remote run (new jail per run) p50 {percentile(lv, 0.5):.2f} ms, bwrap {percentile(bw, 0.5):.2f} ms: "
              f"{figures['remote_run']['ratio_p50']:.2f}x", flush=True)
        warm, hits = warm_creates(sock, a.creates)
        figures["session_create_warm"] = dict(summary(warm), warm=hits)
        print(f"session create from the warm pool p50 {percentile(warm, 0.5):.2f} ms, p95 {percentile(warm, 0.95):.2f} ms "
              f"({hits} of {len(warm)} warm)", flush=True)
        stop(serve, None, None)
        serve = None

        os.makedirs(work + "/cold")
        serve, sock = start_serve(a.levain, work + "/cold", f"max_sessions = {max(a.hold, a.held) + 16}\n[warm_pool]\ndefault = 0\n",
                                  dict(os.environ))

        cold = creates(sock, a.creates)
        figures["session_create"] = summary(cold)
        print(f"session create p50 {percentile(cold, 0.5):.2f} ms, p95 {percentile(cold, 0.95):.2f} ms", flush=True)

        held = []
        conn = UnixHTTP(sock)
        before = rss_kib(serve.pid)
        t0 = time.perf_counter()
        refused = None
        while len(held) < max(a.hold, a.held):
            status, s = api(sock, "POST", "/v1/sessions", {}, conn=conn)
            if status != 201:
                refused = f"{status}: {s}"
                break
            held.append(s["id"])
            if len(held) == a.held:
                busy = creates(sock, a.creates)
                figures["session_create_held"] = dict(summary(busy), held=a.held)
                print(f"session create with {a.held} held: p50 {percentile(busy, 0.5):.2f} ms, "
                      f"p95 {percentile(busy, 0.95):.2f} ms", flush=True)
        seconds = time.perf_counter() - t0
        time.sleep(1)
        after = rss_kib(serve.pid)
        figures["idle_held"] = {"held": len(held), "asked": max(a.hold, a.held), "refused": refused,
                                "seconds": round(seconds, 1), "rss_before_kib": before, "rss_after_kib": after,
                                "per_session_kib": round((after - before) / max(1, len(held)), 1)}
        print(f"idle sessions held: {len(held)} of {max(a.hold, a.held)} in {seconds:.1f} s"
              + (f" (refused: {refused})" if refused else "")
              + f"; supervisor RSS {before} -> {after} KiB", flush=True)
        for sid in held:
            api(sock, "DELETE", f"/v1/sessions/{sid}", conn=conn)
    finally:
        stop(serve, None, work)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
