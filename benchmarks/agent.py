#!/usr/bin/env python3
"""Tools and agent runs against plain references, in one run.

Starts the scripted provider and `levain serve`, opens a session, and
measures:

1. a tool call through the in-jail MCP endpoint (read_file of a small
   file, the reference Python `mcp` client in the jail, one connection)
   against the same read through the control API from the host
   (GET /v1/sessions/S/files/PATH, one keep-alive connection): both read
   through the harness; the difference is the tool service (policy, schema,
   two log events) and the MCP layer;
2. how long a cancelled agent run takes to end: an agent whose tool runs
   `sleep 60`, cancelled once the tool started; from POST cancel to the
   run's terminal status (polled every 1 ms). Target 100 ms.

    benchmarks/agent.py [--levain .build/release/levain] [--n 300] [--cancels 20]
"""
import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time

from bench_support import ROOT, UnixHTTP, api, start_provider, start_serve, stop


def pct(xs, p):
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(len(xs) * p))], 3)


AGENT = """
name = "bench"
model = "gpt-4o-mini"
tools = ["exec"]
max_steps = 4
wall_time = "120s"
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--levain", default=os.path.join(ROOT, ".build/release/levain"))
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--cancels", type=int, default=20)
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()
    figures = {}
    venv = subprocess.run([os.path.join(ROOT, "Tools/python-venv.sh")], capture_output=True, text=True, check=True).stdout.split()[-1]
    work = tempfile.mkdtemp(prefix="levain-bench-agent-")
    key = "sk-bench-" + os.urandom(8).hex()
    env = dict(os.environ, SCRIPTED_PROVIDER_KEY=key, LEVAIN_BENCH_KEY=key)
    provider, serve = None, None
    try:
        provider, port = start_provider(work, env)
        serve, sock = start_serve(a.levain, work, f"""
[providers.openai]
kind = "openai"
base_url = "http://127.0.0.1:{port}/v1"
api_key_env = "LEVAIN_BENCH_KEY"

[models."gpt-4o-mini"]
provider = "openai"
""", env)
        status, s = api(sock, "POST", "/v1/sessions", {"binds": {"ro": [venv, os.path.join(ROOT, "benchmarks/agent") + ":/bench"]}})
        assert status == 201, s
        session = s["id"]
        c = UnixHTTP(sock)
        c.request("PUT", f"/v1/sessions/{session}/files/bench.txt", b"x" * 100, {"content-length": "100"})
        assert c.getresponse().read() is not None

        # 1. A tool call through the MCP endpoint vs the API's file read.
        direct = []
        for i in range(a.n + 20):
            t = time.perf_counter()
            st, _ = api(sock, "GET", f"/v1/sessions/{session}/files/bench.txt", conn=c)
            if i >= 20:
                direct.append((time.perf_counter() - t) * 1000)
            assert st == 200
        status, run = api(sock, "POST", f"/v1/sessions/{session}/runs",
                          {"argv": [venv + "/bin/python", "/bench/mcp_bench.py", str(a.n)], "timeout": 600, "wait": True})
        _, out = api(sock, "GET", f"/v1/runs/{run['id']}/output/stdout?follow=false")
        if run.get("exit_code") != 0:
            _, err = api(sock, "GET", f"/v1/runs/{run['id']}/output/stderr?follow=false")
            raise SystemExit(f"the in-jail MCP client failed: {run}\n{err}")
        m = out if isinstance(out, dict) else json.loads(out)
        print(f"tool call (read_file) through the in-jail MCP endpoint: p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms; "
              f"the same read through the API: p50 {pct(direct, 0.5)} ms, p99 {pct(direct, 0.99)} ms; "
              f"added p50 {m['p50_ms'] - pct(direct, 0.5):.3f} ms ({m['p50_ms'] / pct(direct, 0.5):.2f}x)", flush=True)
        figures["mcp_tool_call"] = {"mcp_p50_ms": m["p50_ms"], "api_read_p50_ms": pct(direct, 0.5),
                                    "added_p50_ms": round(m["p50_ms"] - pct(direct, 0.5), 3)}

        # 2. Cancel latency of agent runs.
        stops = []
        for _ in range(a.cancels):
            script = {"replies": [{"tool_calls": [{"name": "exec", "arguments": {"command": "sleep 60"}}]}, "never"]}
            pc = http.client.HTTPConnection("127.0.0.1", port)
            pc.request("POST", "/_script", json.dumps(script))
            pc.getresponse().read()
            st, r = api(sock, "POST", f"/v1/sessions/{session}/agent-runs", {"agent": AGENT, "input": "go"})
            assert st == 201, r
            rid = r["id"]
            for _ in range(10000):
                _, ev = api(sock, "GET", f"/v1/log/events?run={rid}")
                if any(e["type"] == "tool.started" for e in ev["events"]):
                    break
                time.sleep(0.005)
            poll = UnixHTTP(sock)
            t = time.perf_counter()
            api(sock, "POST", f"/v1/runs/{rid}/cancel")
            while True:
                _, rec = api(sock, "GET", f"/v1/runs/{rid}", conn=poll)
                if rec["status"] in ("cancelled", "succeeded", "failed", "timed_out", "error"):
                    break
                time.sleep(0.001)
            stops.append((time.perf_counter() - t) * 1000)
            assert rec["status"] == "cancelled", rec
        print(f"agent run cancelled during a tool call: ended p50 {pct(stops, 0.5)} ms, max {max(stops):.3f} ms after POST cancel "
              f"(target 100 ms)", flush=True)
        figures["agent_cancel"] = {"p50_ms": pct(stops, 0.5), "max_ms": round(max(stops), 3)}
        api(sock, "DELETE", f"/v1/sessions/{session}")
        if a.json:
            with open(a.json, "w") as f:
                json.dump(figures, f, indent=2)
    finally:
        stop(serve, provider, work)


main()
