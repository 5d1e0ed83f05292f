#!/usr/bin/env python3
"""The measuring client of benchmarks/exits.py: the same program runs on the
host against the scripted provider directly, and inside a jail through the
model gateway and the egress proxy. Python standard library only.

    client.py BASE_URL KEY PROXY_URL_OR_- TARGET_HOST:PORT N BYTES

Prints one JSON object: latency (non-streamed chat completions over one
keep-alive connection), ttft (time to the first streamed content event) and
throughput (GET /bytes through the proxy when PROXY is given, else direct).
"""
import http.client
import json
import sys
import time
import base64
from urllib.parse import urlsplit


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def stats(xs):
    return {"p50_ms": round(percentile(xs, 50) * 1000, 3), "p99_ms": round(percentile(xs, 99) * 1000, 3),
            "mean_ms": round(sum(xs) / len(xs) * 1000, 3), "n": len(xs)}


def main():
    base, key, proxy, target, n, nbytes = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port)
    headers = {"content-type": "application/json", "authorization": "Bearer " + key}
    body = json.dumps({"model": "gpt-4o-mini", "max_tokens": 64,
                       "messages": [{"role": "user", "content": "benchmark [[usage:20,5]]"}]})
    for _ in range(20):  # warm up (connections, caches)
        conn.request("POST", u.path + "/chat/completions", body, headers)
        conn.getresponse().read()
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        conn.request("POST", u.path + "/chat/completions", body, headers)
        r = conn.getresponse()
        r.read()
        lat.append(time.perf_counter() - t)
        assert r.status == 200, r.status
    sbody = json.dumps({"model": "gpt-4o-mini", "max_tokens": 64, "stream": True,
                        "messages": [{"role": "user", "content": "stream [[words:20]]"}]})
    ttft = []
    for _ in range(max(20, n // 5)):
        t = time.perf_counter()
        conn.request("POST", u.path + "/chat/completions", sbody, headers)
        r = conn.getresponse()
        first = None
        while True:
            line = r.fp.readline()
            if not line:
                break
            if first is None and line.startswith(b"data:") and b'"content"' in line:
                first = time.perf_counter() - t
            if line.startswith(b"data: [DONE]"):
                break
        # (chunked framing lines are read as lines too; only data lines count)
        r.close()
        ttft.append(first)
        conn = http.client.HTTPConnection(u.hostname, u.port)
    host, port = target.rsplit(":", 1)
    if proxy != "-":
        p = urlsplit(proxy)
        c = http.client.HTTPConnection(p.hostname, p.port)
        auth = base64.b64encode(f"{p.username}:{p.password}".encode()).decode()
        c.request("GET", f"http://{target}/bytes?n={nbytes}", headers={"proxy-authorization": "Basic " + auth})
    else:
        c = http.client.HTTPConnection(host, int(port))
        c.request("GET", f"/bytes?n={nbytes}")
    t = time.perf_counter()
    r = c.getresponse()
    got = 0
    while True:
        chunk = r.read(1 << 20)
        if not chunk:
            break
        got += len(chunk)
    dt = time.perf_counter() - t
    assert got == nbytes, (got, nbytes)
    print(json.dumps({"latency": stats(lat), "ttft": stats(ttft),
                      "throughput_mb_s": round(nbytes / dt / 1e6, 1)}))


main()
