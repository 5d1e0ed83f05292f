#!/usr/bin/env python3
"""`make bench`: every performance row of Levain in one table.

Runs each benchmark of this directory (each measures its reference in the
same invocation, interleaved where it can), then prints one table: the
figure, its reference, the target and met/missed; and writes the same as
JSON to benchmarks/results/<UTC time>-<commit>.json, so the next run can be
compared with this one (--previous FILE prints the change per row).

    benchmarks/table.py [--bin .build/release] [--quick] [--only ROW,...] [--previous FILE]

--quick: fewer runs per benchmark (a smoke test of the table, not figures
to quote). The figures are ratios or differences against the reference;
absolute milliseconds drift by +-30% over a day on shared machines.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run(name, cmd, out):
    """Runs one benchmark with `--json out`; its figures, or None if it failed."""
    print(f"== {name}: {' '.join(cmd)}", flush=True)
    r = subprocess.run(cmd + ["--json", out], cwd=ROOT)
    if r.returncode != 0:
        print(f"== {name} failed (exit {r.returncode}); its rows are missing", flush=True)
        return None
    with open(out) as f:
        return json.load(f)


def row(name, figure, reference, target, met, unit_note=""):
    return {"row": name, "figure": figure, "reference": reference, "target": target,
            "status": "met" if met else "missed", "note": unit_note}


def missing(name, target, why):
    return {"row": name, "figure": None, "reference": None, "target": target, "status": "not measured", "note": why}


def rows_of(r):
    rows = []
    one = r.get("one_shot")
    if one:
        ratio = one["levain"]["p50"] / one["bwrap"]["p50"]
        rows.append(row("levain run -- /bin/true p50", f"{one['levain']['p50']:.2f} ms = {ratio:.2f}x bwrap",
                        f"bwrap {one['bwrap']['p50']:.2f} ms" + (f", runc {one['runc']['p50']:.2f} ms" if "runc" in one else ""),
                        "<= 1.5x bwrap (nsjail: not packaged for Debian 12, not measured)", ratio <= 1.5))
    else:
        rows.append(missing("levain run -- /bin/true p50", "<= 1.5x bwrap", "one_shot.py did not run"))
    paths = r.get("paths")
    if paths:
        rr = paths["remote_run"]
        rows.append(row("levain --connect run (new jail per run)", f"{rr['levain']['p50_ms']:.2f} ms = {rr['ratio_p50']:.2f}x bwrap",
                        f"bwrap {rr['bwrap']['p50_ms']:.2f} ms", "<= 1.0x bwrap", rr["ratio_p50"] <= 1.0))
    sup = r.get("supervisor")
    if sup:
        e = sup["exec"]
        rows.append(row("exec /bin/true in an open session", f"+{e['added_p50_ms']:.3f} ms (p50 {e['api_p50_ms']:.3f} ms)",
                        f"fork+exec {e['plain_p50_ms']:.3f} ms", "<= +1.0 ms", e["added_p50_ms"] <= 1.0))
    if paths:
        c = paths["session_create"]
        rows.append(row("session create p50 (cold, no pool)", f"{c['p50_ms']:.2f} ms", "E2B 150-440 ms, Daytona <90 ms (published)",
                        "<= 10 ms cold", c["p50_ms"] <= 10))
        h = paths.get("session_create_held")
        if h:
            rows.append(row(f"session create p50 with {h['held']} held", f"{h['p50_ms']:.2f} ms", f"cold {c['p50_ms']:.2f} ms",
                            "<= 10 ms", h["p50_ms"] <= 10))
        w = paths.get("session_create_warm")
        if w:
            rows.append(row("session create p50 from a warm pool", f"{w['p50_ms']:.2f} ms ({w['warm']} of {w['n']} warm)",
                            f"cold {c['p50_ms']:.2f} ms", "<= 3 ms", w["p50_ms"] <= 3 and w["warm"] == w["n"]))
    if sup:
        s = sup["stdout"]
        size = s.get("bytes", 1 << 30)  # results from before the bytes were recorded: 1 GiB
        label = f"{size >> 30} GiB" if size >= 1 << 30 else f"{size >> 20} MiB"
        rows.append(row(f"stdout of a run through the API, {label}", f"{s['api_mb_s']:.0f} MB/s = {s['ratio']:.2f}x",
                        f"head -c | cat {s['pipe_mb_s']:.0f} MB/s", ">= 0.5x", s["ratio"] >= 0.5))
    ex = r.get("exits")
    if ex:
        su = ex["summary"]
        d = ex["rounds"][0]["direct"]
        rows.append(row("egress proxy throughput", f"{su['throughput_ratio']:.2f}x direct", f"direct {d['throughput_mb_s']} MB/s",
                        ">= 0.6x", su["throughput_ratio"] >= 0.6))
        rows.append(row("gateway time to first streamed token, added", f"+{su['ttft_added_p50_ms']:.3f} ms",
                        f"direct {d['ttft']['p50_ms']} ms", "<= +0.5 ms", su["ttft_added_p50_ms"] <= 0.5))
    ag = r.get("agent")
    if ag:
        m = ag["mcp_tool_call"]
        rows.append(row("MCP tool call over the same read via the API", f"+{m['added_p50_ms']:.3f} ms",
                        f"API read {m['api_read_p50_ms']} ms", "<= +0.5 ms", m["added_p50_ms"] <= 0.5))
    if paths:
        i = paths["idle_held"]
        rows.append(row("idle sessions held", f"{i['held']} of {i['asked']} ({i['per_session_kib']:.0f} KiB RSS each)",
                        f"{i['seconds']} s to open", ">= 2,000", i["held"] >= 2000,
                        f"refused: {i['refused']}" if i["refused"] else ""))
    return rows


def commit():
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True)
    return (r.stdout.strip() or "unknown") + ("-dirty" if dirty.stdout.strip() else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, ".build/release"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="one_shot,paths,supervisor,exits,agent")
    ap.add_argument("--previous", help="an earlier results file: print each row's change")
    a = ap.parse_args()
    levain = os.path.join(a.bin, "levain")
    q = a.quick
    benches = {
        "one_shot": [sys.executable, "benchmarks/one_shot.py", "--levain", levain, "--runs", "30" if q else "200"],
        "paths": [sys.executable, "benchmarks/supervisor_paths.py", "--levain", levain]
        + (["--runs", "20", "--creates", "10", "--held", "50", "--hold", "100"] if q else []),
        "supervisor": [os.path.join(a.bin, "levain-bench-supervisor"), "--levain", levain]
        + (["--runs", "50", "--bytes", str(64 << 20), "--sessions", "20"] if q else []),
        "exits": [sys.executable, "benchmarks/exits.py", "--levain", levain] + (["--n", "100", "--bytes", "64M", "--rounds", "1"] if q else []),
        "agent": [sys.executable, "benchmarks/agent.py", "--levain", levain] + (["--n", "50", "--cancels", "3"] if q else []),
    }
    wanted = a.only.split(",")
    results = {}
    with tempfile.TemporaryDirectory(prefix="levain-bench-table-") as tmp:
        for name in wanted:
            results[name] = run(name, benches[name], os.path.join(tmp, name + ".json"))
    rows = rows_of({k: v for k, v in results.items() if v is not None})
    previous = {}
    if a.previous:
        with open(a.previous) as f:
            previous = {x["row"]: x for x in json.load(f)["rows"]}

    widths = [max(len(str(x[k] or "-")) for x in rows + [{"row": "row", "figure": "figure", "reference": "reference",
                                                          "target": "target", "status": "status"}])
              for k in ("row", "figure", "reference", "target", "status")]
    line = lambda cells: "| " + " | ".join(str(c or "-").ljust(w) for c, w in zip(cells, widths)) + " |"
    print()
    print(line(["row", "figure", "reference", "target", "status"]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for x in rows:
        print(line([x["row"], x["figure"], x["reference"], x["target"], x["status"]]))
        if x["row"] in previous:
            print(f"    before: {previous[x['row']]['figure']} ({previous[x['row']]['status']})")
        if x["note"]:
            print(f"    {x['note']}")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_dir = os.path.join(HERE, "results")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{stamp}-{commit()}{'-quick' if q else ''}.json")
    with open(path, "w") as f:
        json.dump({"commit": commit(), "time": stamp, "quick": q, "rows": rows, "raw": results}, f, indent=2)
    print(f"\nwritten: {os.path.relpath(path, ROOT)}")
    failed = [k for k, v in results.items() if v is None]
    if failed:
        print(f"benchmarks that failed: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
