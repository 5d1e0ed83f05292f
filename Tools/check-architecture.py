#!/usr/bin/env python3
"""Checks docs/ARCHITECTURE.md against the code (run by `make test`).

1. The ```graph block equals Package.swift's graph of project targets
   (from `swift package dump-package`).
2. No Swift file under Sources/<Target>/ imports a project target that
   <Target> does not list there.
3. No file under Sources is longer than 600 lines unless the "Long files"
   section names it.
Exits 1 naming every difference.
"""
import json, os, re, subprocess, sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
doc_path = os.path.join(root, "docs", "ARCHITECTURE.md")
doc = open(doc_path, encoding="utf-8").read()
problems = []

m = re.search(r"```graph\n(.*?)```", doc, re.S)
if not m:
    sys.exit("docs/ARCHITECTURE.md: no ```graph block")
documented = {}
for n, line in enumerate(m.group(1).strip().splitlines(), 1):
    if "->" not in line:
        problems.append(f"docs/ARCHITECTURE.md graph line {n}: expected 'Target -> A, B'")
        continue
    name, deps = line.split("->", 1)
    documented[name.strip()] = {d.strip() for d in deps.split(",") if d.strip()}

swift = os.environ.get("SWIFT", "swift")
dump = json.loads(subprocess.run([swift, "package", "dump-package"], cwd=root, check=True,
                                 capture_output=True, text=True).stdout)
targets = {t["name"]: t for t in dump["targets"]}
actual = {}
for t in dump["targets"]:
    if t["type"] == "test":
        continue
    deps = set()
    for d in t["dependencies"]:
        if "byName" in d and d["byName"][0] in targets:
            deps.add(d["byName"][0])
        elif "target" in d:
            deps.add(d["target"][0])
    actual[t["name"]] = deps

for name in sorted(set(actual) | set(documented)):
    if name not in documented:
        problems.append(f"target {name} is in Package.swift but not in the graph of docs/ARCHITECTURE.md")
    elif name not in actual:
        problems.append(f"target {name} is in docs/ARCHITECTURE.md but not in Package.swift")
    elif actual[name] != documented[name]:
        extra = sorted(actual[name] - documented[name])
        missing = sorted(documented[name] - actual[name])
        problems.append(f"target {name}: Package.swift has {extra or 'nothing'} the document lacks, "
                        f"the document has {missing or 'nothing'} Package.swift lacks")

def source_dir(t):
    if t.get("path"):
        return os.path.join(root, t["path"])
    base = "Tests" if t["type"] == "test" else "Sources"
    return os.path.join(root, base, t["name"])

for name, deps in actual.items():
    d = source_dir(targets[name])
    for dirpath, _, files in os.walk(d):
        for f in files:
            if not f.endswith(".swift"):
                continue
            path = os.path.join(dirpath, f)
            for n, line in enumerate(open(path, encoding="utf-8"), 1):
                im = re.match(r"\s*(?:@testable\s+|@_exported\s+)?import\s+(\w+)", line)
                if im and im.group(1) in targets and im.group(1) != name and im.group(1) not in documented.get(name, set()):
                    problems.append(f"{os.path.relpath(path, root)}:{n}: imports {im.group(1)}, which {name} does not list in docs/ARCHITECTURE.md")

long_section = doc.split("## Long files", 1)[1].split("\n## ", 1)[0] if "## Long files" in doc else ""
allowed_long = set(re.findall(r"`(Sources/[^`]+)`", long_section))
for dirpath, _, files in os.walk(os.path.join(root, "Sources")):
    for f in files:
        if not f.endswith((".swift", ".c", ".h")):
            continue
        path = os.path.join(dirpath, f)
        rel = os.path.relpath(path, root)
        lines = sum(1 for _ in open(path, encoding="utf-8", errors="replace"))
        if lines > 600 and rel not in allowed_long:
            problems.append(f"{rel}: {lines} lines (over 600): split it, or name it under 'Long files' in docs/ARCHITECTURE.md with its one concern")

if problems:
    print("check-architecture: docs/ARCHITECTURE.md and the code disagree:")
    for p in problems:
        print("  " + p)
    sys.exit(1)
print(f"check-architecture: {len(actual)} targets, graph and imports match docs/ARCHITECTURE.md; no unnamed file over 600 lines")
