#!/bin/bash
# `make demo`: run demo/untrusted.py in a jail under the default policy and
# show what was contained and what the run used.
set -euo pipefail
cd "$(dirname "$0")/.."
LEVAIN=${1:-.build/release/levain}
STATE=${LEVAIN_STATE:-/var/lib/levain}
# The report is kept: its path is printed below, to read in full.
REPORT=$(mktemp /tmp/levain-demo-report.XXXXXX.json)

echo "== levain run --ro demo:/demo -- python3 /demo/untrusted.py   (policy: default)"
echo
set +e
"$LEVAIN" run --state "$STATE" --ro "$PWD/demo:/demo" --json-report "$REPORT" -- python3 /demo/untrusted.py
status=$?
set -e
echo
echo "== levain exited $status; from the run report ($REPORT):"
python3 - "$REPORT" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
iso = r["isolation"]
mb = lambda b: "-" if b is None else f"{b / 2**20:.1f} MiB"
print(f"  run id           {r['id']}")
print(f"  exit             {r['exit']}")
print(f"  wall time        {r['wall_time_ms']:.0f} ms")
print(f"  cpu              user {r['cpu']['user_ms']:.0f} ms, system {r['cpu']['system_ms']:.0f} ms ({r['cpu']['source']})")
print(f"  peak memory      {mb(r['memory']['peak_bytes'])} of {mb(r['memory']['limit_bytes'])}")
lim = r["limits"]
print(f"  limits hit       {', '.join(lim['which']) or 'none'} (oom kills {lim['oom_kills']}, pids-limit hits {lim['pids_limit_hits']})")
print(f"  namespaces       {', '.join(iso['namespaces'])}")
print(f"  user             uid {iso['user']['uid']} in the jail = host uid {iso['user']['host_uid']}")
sc = iso["seccomp"]
print(f"  seccomp          {sc['profile']}: {sc['allowed_syscalls']} syscalls allowed, default {sc['default_action']}, {sc['filters']} filters / {sc['instructions']} BPF instructions")
print(f"  landlock         {'ABI ' + str(iso['landlock']['abi']) if iso['landlock']['applied'] else 'not applied'}")
print(f"  cgroup           v{iso['cgroup']['version']} {', '.join(iso['cgroup']['controllers'])}")
print(f"  capabilities     {iso['capabilities']}; no_new_privs {iso['no_new_privs']}; network {iso['network']}")
quota = lim.get("workspace_bytes")
print(f"  workspace        {r['workspace']} ({'a ' + mb(quota) + ' ext4 image, ' if quota else ''}survives the run)")
PY
ws=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["workspace"] or "")' "$REPORT")
if [ -n "$ws" ] && [ -f "$ws/out/result.json" ]; then
    echo "  result           $(cat "$ws/out/result.json")"
elif [ -n "$ws" ] && [ -f "$ws" ]; then
    # A workspace with a size is an ext4 image: read it without mounting.
    result=$(/sbin/debugfs -R "cat /out/result.json" "$ws" 2>/dev/null || true)
    [ -n "$result" ] && echo "  result           $result"
fi
