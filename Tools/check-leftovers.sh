#!/bin/sh
# After the tests: no run cgroup may remain under any levain parent, and no
# process may run with a jail's host uid (0x70000000 + ...), and no loop
# device may still hold a workspace image (workspaces/<id>.img).
set -eu
fail=0
for parent in /sys/fs/cgroup/*/levain /sys/fs/cgroup/levain /sys/fs/cgroup/*/levain-test /sys/fs/cgroup/levain-test; do
    [ -d "$parent" ] || continue
    for d in "$parent"/*/; do
        [ -d "$d" ] || continue
        echo "check-leftovers: cgroup left behind: $d" >&2
        fail=1
    done
done
jailprocs=$(ps -eo uid=,pid=,args= | awk '$1 >= 1879048192 && $1 < 1879048192 + 65536')
if [ -n "$jailprocs" ]; then
    echo "check-leftovers: jail processes left behind:" >&2
    echo "$jailprocs" >&2
    fail=1
fi
loops=$(losetup -a 2>/dev/null | grep '/workspaces/[rs]-[0-9a-f]*\.img' || true)
if [ -n "$loops" ]; then
    echo "check-leftovers: loop devices still holding workspace images:" >&2
    echo "$loops" >&2
    fail=1
fi
[ "$fail" = 0 ] && echo "check-leftovers: no cgroup, jail process or workspace loop device left behind"
exit $fail
