#!/usr/bin/env python3
"""The deepagents backend (clients/python, levain.deepagents) against a
local subprocess, in one run.

Starts `levain serve` and measures, through `LevainSandbox` (the Python
client over the Unix socket), interleaved with the reference so that both
see the same machine:

1. cold: session create + the first `execute("echo hi")` (a jail, its
   harness, the first run), then the session closed (not timed);
   reference: `subprocess.run("echo hi", shell=True)`.
2. warm: `execute("echo hi")` in an open session;
   reference: the same subprocess.run.

Targets (issue 13): cold p50 <= 50 ms; warm <= 3 ms over the subprocess.
Then the split of a warm execute: the run submitted with `wait: true` and
`inline_output` (what the backend sends: the output comes in the answer),
the same without `inline_output` and its output read separately (the path
before inline output), and a GET /v1/health (HTTP alone) on the same
connection.

    benchmarks/deepagents_backend.py [--levain .build/release/levain] [--cold 30] [--warm 300]

Needs the venv of Tools/python-venv.sh (deepagents, httpx2); run it with
that venv's python, or it re-executes itself there.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

from bench_support import ROOT, start_serve, stop

VENV = "/var/cache/levain/pyvenv"


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--levain", default=os.path.join(ROOT, ".build/release/levain"))
    ap.add_argument("--cold", type=int, default=30)
    ap.add_argument("--warm", type=int, default=300)
    a = ap.parse_args()
    try:
        import deepagents  # noqa: F401
    except ImportError:
        venv = subprocess.run([os.path.join(ROOT, "Tools/python-venv.sh")], capture_output=True, text=True,
                              check=True).stdout.split()[-1]
        os.execv(os.path.join(venv, "bin/python"), [os.path.join(venv, "bin/python")] + sys.argv)
    sys.path.insert(0, os.path.join(ROOT, "clients/python/src"))
    import levain
    from levain.deepagents import LevainSandbox

    work = tempfile.mkdtemp(prefix="levain-bench-deepagents-")
    serve = None
    try:
        serve, sock = start_serve(a.levain, work, "", dict(os.environ))
        client = levain.Client(f"unix:{sock}")

        def local():
            t = time.perf_counter()
            subprocess.run("echo hi", shell=True, capture_output=True, check=True)
            return (time.perf_counter() - t) * 1e3

        cold, cold_ref = [], []
        for _ in range(a.cold):
            t = time.perf_counter()
            sandbox = LevainSandbox(client.create_session())
            r = sandbox.execute("echo hi")
            cold.append((time.perf_counter() - t) * 1e3)
            assert r.output == "hi\n", r
            sandbox.session.close()
            cold_ref.append(local())

        sandbox = LevainSandbox(client.create_session())
        for _ in range(10):
            sandbox.execute("echo hi")
        warm, warm_ref = [], []
        for _ in range(a.warm):
            t = time.perf_counter()
            r = sandbox.execute("echo hi")
            warm.append((time.perf_counter() - t) * 1e3)
            assert r.exit_code == 0
            warm_ref.append(local())
        # Where the warm time goes: the run submitted with wait: true and
        # inline_output, the same with its output read separately, and a
        # GET /v1/health on the same connection (HTTP alone).
        inline, submit, output, health = [], [], [], []
        runs = f"/v1/sessions/{sandbox.id}/runs"
        for _ in range(a.warm):
            t = time.perf_counter()
            info = client._request("POST", runs, json={"command": "echo hi", "wait": True, "inline_output": 65536},
                                   timeout=None)
            inline.append((time.perf_counter() - t) * 1e3)
            assert info.get("stdout_base64") == "aGkK", info
            t = time.perf_counter()
            info = client._request("POST", runs, json={"command": "echo hi", "wait": True}, timeout=None)
            submit.append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            client.run(info["id"]).stdout()
            output.append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            client.health()
            health.append((time.perf_counter() - t) * 1e3)
        sandbox.session.close()

        print(f"deepagents backend, {a.cold} cold and {a.warm} warm, interleaved with subprocess.run (ms)")
        print(f"{'':34} {'p50':>8} {'p95':>8}")
        rows = [("create + first execute", cold), ("  subprocess.run('echo hi')", cold_ref),
                ("warm execute", warm), ("  subprocess.run('echo hi')", warm_ref)]
        rows += [("split: POST wait+inline_output", inline), ("split: POST runs wait:true", submit),
                 ("split:   then GET output", output), ("split: GET health", health)]
        for name, xs in rows:
            print(f"{name:34} {pct(xs, 0.5):8.2f} {pct(xs, 0.95):8.2f}")
        print(f"cold p50: {pct(cold, 0.5):.1f} ms (target <= 50)")
        print(f"warm p50 over subprocess p50: +{pct(warm, 0.5) - pct(warm_ref, 0.5):.2f} ms (target <= +3)")
        client.close()
    finally:
        stop(serve, None, work)


if __name__ == "__main__":
    main()
