#!/usr/bin/env python3
"""One-shot jail latency: `levain run -- /bin/true` against bubblewrap and runc.

All three run /bin/true in a fresh sandbox with the closest settings each
tool has, interleaved in one invocation (so machine noise hits all alike),
and the script prints p50/p95 per tool and the ratio levain/bwrap.

  levain  default policy: user, pid, mount, net, uts, ipc, cgroup namespaces;
          tmpfs root, /usr ro, generated /etc, /proc with masks, /dev, /tmp;
          seccomp (two filters), Landlock, no caps, no_new_privs;
          cgroup with memory/cpu/pids limits; per-run workspace.
  bwrap   --unshare-all --die-with-parent --new-session, /usr ro + the
          merged-usr symlinks, --proc, --dev, --tmpfs /tmp. No seccomp, no
          cgroups, no Landlock.
  runc    `runc run` of a bundle with /usr bound ro, its default
          namespaces (pid, net, ipc, uts, mount), cgroup limits on memory,
          cpu and pids; no user namespace, no seccomp profile.

Usage: benchmarks/one_shot.py [--levain PATH] [--runs N] [--json FILE]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def bwrap_cmd():
    cmd = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        path = "/" + name
        if os.path.islink(path):
            cmd += ["--symlink", os.readlink(path), path]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "/bin/true"]
    return cmd


def make_runc_bundle(root):
    """A bundle whose rootfs holds only mount points; /usr is bound from the host."""
    rootfs = os.path.join(root, "rootfs")
    os.makedirs(rootfs)
    for d in ("usr", "proc", "dev", "tmp", "sys"):
        os.makedirs(os.path.join(rootfs, d))
    for name in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        path = "/" + name
        if os.path.islink(path):
            os.symlink(os.readlink(path), os.path.join(rootfs, name))
    subprocess.run(["runc", "spec"], cwd=root, check=True)
    with open(os.path.join(root, "config.json")) as f:
        spec = json.load(f)
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["/bin/true"]
    spec["root"]["readonly"] = True
    spec["mounts"].append({"destination": "/usr", "type": "bind", "source": "/usr",
                           "options": ["rbind", "ro", "nosuid", "nodev"]})
    spec["linux"]["resources"] = {
        "memory": {"limit": 512 << 20, "swap": 512 << 20},
        "cpu": {"quota": 100000, "period": 100000},
        "pids": {"limit": 256},
        "devices": spec["linux"]["resources"].get("devices", []),
    }
    with open(os.path.join(root, "config.json"), "w") as f:
        json.dump(spec, f)
    return root


def timed(cmd, **kw):
    start = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    elapsed = (time.perf_counter() - start) * 1000
    if r.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({r.returncode}): {r.stderr.decode(errors='replace')[:500]}")
    return elapsed


def percentile(xs, p):
    xs = sorted(xs)
    k = (len(xs) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--levain", default=os.path.join(os.path.dirname(__file__), "..", ".build", "release", "levain"))
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--compare", metavar="PATH",
                    help="another levain binary (a build before a change), run interleaved with the rest as 'levain-b'")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (levain and runc need it)")

    state = tempfile.mkdtemp(prefix="levain-bench-state-")
    bundle_root = tempfile.mkdtemp(prefix="levain-bench-runc-")
    tools = {"levain": [os.path.abspath(args.levain), "run", "--state", state, "--", "/bin/true"],
             "bwrap": bwrap_cmd()}
    if args.compare:
        tools["levain-b"] = [os.path.abspath(args.compare), "run", "--state", state, "--", "/bin/true"]
    if shutil.which("runc"):
        make_runc_bundle(bundle_root)
    else:
        print("runc not found: skipped (Tools/install-deps.sh --bench installs it)", file=sys.stderr)
    samples = {name: [] for name in list(tools) + (["runc"] if shutil.which("runc") else [])}
    try:
        for i in range(args.warmup + args.runs):
            for name in samples:
                if name == "runc":
                    ms = timed(["runc", "run", f"levain-bench-{os.getpid()}"], cwd=bundle_root)
                else:
                    ms = timed(tools[name])
                if i >= args.warmup:
                    samples[name].append(ms)
            if i >= args.warmup and os.path.isdir(os.path.join(state, "workspaces")):
                # Workspaces survive their runs; keep the benchmark's directory small.
                shutil.rmtree(os.path.join(state, "workspaces"), ignore_errors=True)
    finally:
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(bundle_root, ignore_errors=True)

    figures = {}
    print(f"one-shot /bin/true, {args.runs} runs each, interleaved (ms):")
    print(f"  {'tool':<8} {'p50':>8} {'p95':>8} {'mean':>8}")
    for name, xs in samples.items():
        figures[name] = {"p50": percentile(xs, 0.5), "p95": percentile(xs, 0.95), "mean": statistics.mean(xs)}
        f = figures[name]
        print(f"  {name:<8} {f['p50']:8.2f} {f['p95']:8.2f} {f['mean']:8.2f}")
    ratio = figures["levain"]["p50"] / figures["bwrap"]["p50"]
    figures["ratio_levain_bwrap_p50"] = ratio
    print(f"  levain/bwrap p50 ratio: {ratio:.2f} (target: <= 2.0)")
    if "runc" in figures:
        print(f"  levain/runc p50 ratio:  {figures['levain']['p50'] / figures['runc']['p50']:.2f}")
    if "levain-b" in figures:
        figures["ratio_levain_levain_b_p50"] = figures["levain"]["p50"] / figures["levain-b"]["p50"]
        print(f"  levain/levain-b p50 ratio: {figures['ratio_levain_levain_b_p50']:.2f} (levain-b: {args.compare})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
