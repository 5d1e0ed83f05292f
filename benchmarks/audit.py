#!/usr/bin/env python3
"""The cost of the audit layer ([audit], docs/AUDIT.md), in one invocation.

Starts `levain serve` and opens two sessions, one with the default policy
and one with the default policy plus `[audit] record = [...]` (what
docs/AUDIT.md suggests: execs, writes, connects, unlinks, renames). In each,
interleaved, a Python program inside the jail times:

1. one gated call: `open(path, O_WRONLY | O_CREAT)` + close, N times (the
   audited session answers each through the supervisor; the other does not
   stop at all), per-call p50/p95;
2. one gated exec: `posix_spawn` of /bin/true + wait, N times;
3. a workload: a small C project (17 files) built with `make -j2`, wall time;
4. the adversarial one: `tar` of /usr/lib/python3.11 into the workspace and
   back out (thousands of creates, each one gated and recorded), wall time.

The difference of the p50s is what auditing one call costs (target <= 30 us).

    benchmarks/audit.py [--levain .build/release/levain] [-n 2000]
"""
import argparse
import base64
import json
import os
import sys
import tempfile

from bench_support import ROOT, api, start_serve, stop

RECORD = ["execve", "execveat", "openat", "open", "creat", "connect", "unlinkat", "renameat2"]

PROBE = r"""
import json, os, sys, time, subprocess
n = int(sys.argv[1])
def pct(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(len(xs) * p))]
opens = []
for i in range(n):
    t = time.perf_counter_ns()
    fd = os.open("/workspace/f%d" % (i % 64), os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)
    opens.append((time.perf_counter_ns() - t) / 1000)
execs = []
for i in range(max(1, n // 4)):
    t = time.perf_counter_ns()
    pid = os.posix_spawn("/bin/true", ["true"], {})
    os.waitpid(pid, 0)
    execs.append((time.perf_counter_ns() - t) / 1000)
# A small C project: 16 files, make -j2 (execs of cc, cc1, as, ld; object
# files written), from clean.
os.makedirs("/workspace/c", exist_ok=True)
for i in range(16):
    with open("/workspace/c/f%d.c" % i, "w") as f:
        f.write("#include <stdio.h>\n" + "".join("int f%d_%d(int x) { return x * %d + %d; }\n" % (i, k, k, i) for k in range(200)))
with open("/workspace/c/main.c", "w") as f:
    f.write("int main(void) { return 0; }\n")
with open("/workspace/c/Makefile", "w") as f:
    objs = " ".join("f%d.o" % i for i in range(16)) + " main.o"
    f.write("prog: %s\n\tcc -o $@ $^\n%%.o: %%.c\n\tcc -O1 -c -o $@ $<\n" % objs)
t = time.perf_counter()
subprocess.run("make -s -C /workspace/c -j2 prog >/dev/null",
               shell=True, check=True)
make = time.perf_counter() - t
subprocess.run("rm -f /workspace/c/*.o /workspace/c/prog", shell=True, check=True)
# The adversarial case: thousands of files created (tar of python3.11's
# library into the workspace and out).
t = time.perf_counter()
subprocess.run("mkdir -p /workspace/w && tar -C /usr/lib/python3.11 -cf - . | tar -C /workspace/w -xf - && rm -rf /workspace/w",
               shell=True, check=True)
work = time.perf_counter() - t
print(json.dumps({"open50": pct(opens, .5), "open95": pct(opens, .95), "exec50": pct(execs, .5),
                  "exec95": pct(execs, .95), "make": make, "work": work}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--levain", default=os.path.join(ROOT, ".build/release/levain"))
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="levain-bench-audit-")
    serve = None
    try:
        policy = os.path.join(work, "audited.toml")
        with open(os.path.join(ROOT, "policies/default.toml")) as f:
            text = f.read().replace('name = "default"', 'name = "audited"', 1)
        with open(policy, "w") as f:
            f.write(text + "\n[audit]\nrecord = [%s]\nignore_paths = [\"/dev\", \"/proc\"]\n" % ", ".join('"%s"' % n for n in RECORD))
        serve, sock = start_serve(a.levain, work, "", dict(os.environ))
        sessions = {}
        for name, body in (("plain", {}), ("audited", {"policy": policy})):
            status, s = api(sock, "POST", "/v1/sessions", body)
            assert status == 201 or status == 200, s
            sessions[name] = s["id"]
        results = {"plain": [], "audited": []}
        for _ in range(a.rounds):
            for name, sid in sessions.items():
                status, r = api(sock, "POST", f"/v1/sessions/{sid}/runs",
                                {"argv": ["python3", "-c", PROBE, str(a.n)], "wait": True, "inline_output": 65536,
                                 "timeout": 600})
                assert r.get("exit_code") == 0, r

                results[name].append(json.loads(base64.b64decode(r["stdout_base64"])))

        def med(name, key):
            xs = sorted(x[key] for x in results[name])
            return xs[len(xs) // 2]

        print(f"audit layer, {a.rounds} rounds of {a.n} opens and {a.n // 4} execs per session, interleaved (us; work: s)")
        print(f"{'':28} {'plain':>10} {'audited':>10} {'added':>10}")
        for key, label in (("open50", "open(O_CREAT) p50"), ("open95", "open(O_CREAT) p95"),
                           ("exec50", "posix_spawn+wait p50"), ("exec95", "posix_spawn+wait p95"),
                           ("make", "make -j2, 17 C files (s)"), ("work", "tar python3.11 in+out (s)")):
            p, q = med("plain", key), med("audited", key)
            if key in ("make", "work"):
                print(f"{label:28} {p:10.3f} {q:10.3f} {q - p:+10.3f}  ({q / p:.2f}x)")
            else:
                print(f"{label:28} {p:10.1f} {q:10.1f} {q - p:+10.1f}")
        print(f"gated call p50 added: {med('audited', 'open50') - med('plain', 'open50'):.1f} us (target <= 30)")
        print(f"make -j2: {med('audited', 'make') / med('plain', 'make'):.2f}x (target <= 1.10); "
              f"tar of many small files: {med('audited', 'work') / med('plain', 'work'):.2f}x")
    finally:
        stop(serve, None, work)


if __name__ == "__main__":
    sys.exit(main())
