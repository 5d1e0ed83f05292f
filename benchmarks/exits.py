#!/usr/bin/env python3
"""The model gateway and the egress proxy against direct calls, in one run.

Starts the scripted provider (Tests/Fixtures/scripted_provider.py) on
loopback and `levain serve` with a config naming it, opens a session, and
runs the same client (benchmarks/exits/client.py) twice: on the host,
straight to the provider; and inside the session's jail, through the
gateway (OPENAI_BASE_URL) and the egress proxy (HTTP_PROXY). Reports the
gateway's added latency (p50, p99), time to the first streamed token, and
the proxy's throughput, each against the direct figure.

    benchmarks/exits.py [--levain .build/release/levain] [--n 1000] [--bytes 512M] [--rounds 3]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

from bench_support import ROOT, api, start_provider, start_serve, stop


def size(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(s[:-1]) * mult[s[-1]] if s[-1] in mult else int(s)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--levain", default=os.path.join(ROOT, ".build/release/levain"))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--bytes", default="512M")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", default="/tmp/levain-bench-exits.json")
    a = ap.parse_args()
    nbytes = size(a.bytes)
    work = tempfile.mkdtemp(prefix="levain-bench-exits-")
    key = "sk-bench-" + os.urandom(8).hex()
    env = dict(os.environ, SCRIPTED_PROVIDER_KEY=key, LEVAIN_BENCH_KEY=key)
    provider, serve = None, None
    try:
        provider, port = start_provider(work, env)
        policy = open(os.path.join(ROOT, "policies/default.toml")).read()
        policy = policy.replace('allow = []\ndeny = []\nports = [80, 443]', f'allow = ["bench.test"]\ndeny = []\nports = [80, 443, {port}]')
        policy = policy.replace('name = "default"', 'name = "bench-exits"')
        with open(os.path.join(work, "bench.toml"), "w") as f:
            f.write(policy)
        serve, sock = start_serve(a.levain, work, f"""
[providers.openai]
kind = "openai"
base_url = "http://127.0.0.1:{port}/v1"
api_key_env = "LEVAIN_BENCH_KEY"

[models."gpt-4o-mini"]
provider = "openai"
input_price = 0.15
output_price = 0.6

[network.hosts]
"bench.test" = "127.0.0.1"
""", env)
        status, s = api(sock, "POST", "/v1/sessions", {"policy": os.path.join(work, "bench.toml"),
                                                       "binds": {"ro": [os.path.join(ROOT, "benchmarks/exits") + ":/bench"]}})
        assert status == 201, s
        session = s["id"]
        client = os.path.join(ROOT, "benchmarks/exits/client.py")
        rows = []
        for r in range(a.rounds):
            direct = subprocess.run([sys.executable, client, f"http://127.0.0.1:{port}/v1", key, "-", f"127.0.0.1:{port}",
                                     str(a.n), str(nbytes)], capture_output=True, text=True, check=True)
            d = json.loads(direct.stdout)
            argv = ["/bin/sh", "-c", f'exec python3 /bench/client.py "$OPENAI_BASE_URL" "$OPENAI_API_KEY" "$HTTP_PROXY" bench.test:{port} {a.n} {nbytes}']
            status, run = api(sock, "POST", f"/v1/sessions/{session}/runs", {"argv": argv, "timeout": 600})
            assert status in (200, 201), run
            status, done = api(sock, "POST", f"/v1/runs/{run['id']}/wait?timeout=600")
            _, out = api(sock, "GET", f"/v1/runs/{run['id']}/output/stdout?follow=false")
            _, err = api(sock, "GET", f"/v1/runs/{run['id']}/output/stderr?follow=false")
            if done.get("exit_code") != 0:
                raise SystemExit(f"the in-jail client failed: {done}\n{err}")
            g = json.loads(out if isinstance(out, str) else json.dumps(out))
            rows.append({"direct": d, "gateway": g})
            print(f"round {r + 1}: latency p50 direct {d['latency']['p50_ms']} ms, gateway {g['latency']['p50_ms']} ms "
                  f"(+{g['latency']['p50_ms'] - d['latency']['p50_ms']:.3f}); p99 {d['latency']['p99_ms']} / {g['latency']['p99_ms']}; "
                  f"ttft p50 {d['ttft']['p50_ms']} / {g['ttft']['p50_ms']} ms; "
                  f"throughput {d['throughput_mb_s']} / {g['throughput_mb_s']} MB/s "
                  f"({g['throughput_mb_s'] / d['throughput_mb_s']:.2f}x)", flush=True)
        med = lambda xs: sorted(xs)[len(xs) // 2]
        summary = {
            "added_p50_ms": round(med([x["gateway"]["latency"]["p50_ms"] - x["direct"]["latency"]["p50_ms"] for x in rows]), 3),
            "added_p99_ms": round(med([x["gateway"]["latency"]["p99_ms"] - x["direct"]["latency"]["p99_ms"] for x in rows]), 3),
            "ttft_added_p50_ms": round(med([x["gateway"]["ttft"]["p50_ms"] - x["direct"]["ttft"]["p50_ms"] for x in rows]), 3),
            "throughput_ratio": round(med([x["gateway"]["throughput_mb_s"] / x["direct"]["throughput_mb_s"] for x in rows]), 3),
        }
        print("median of rounds:", json.dumps(summary))
        print("targets: added p50 < 1 ms; first token within 1 ms of direct; proxy throughput >= 0.5x direct")
        with open(a.json, "w") as f:
            json.dump({"rounds": rows, "summary": summary, "n": a.n, "bytes": nbytes}, f, indent=2)
        api(sock, "DELETE", f"/v1/sessions/{session}")
    finally:
        stop(serve, provider, work)


main()
