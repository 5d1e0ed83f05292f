"""The audit layer ([audit] in a policy): seccomp user notification in the
supervisor, each gated call a `syscall.audited` event joined to its run,
against a real `levain serve` and real jails."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import levain
from conftest import REPO, Supervisor, _binary

RECORDED = ["execve", "execveat", "open", "openat", "creat", "connect", "bind", "unlink", "unlinkat",
            "rename", "renameat", "renameat2", "kill"]


def audited_policy(directory: Path, ignore: tuple[str, ...] = ("/dev", "/proc")) -> str:
    text = (REPO / "policies" / "default.toml").read_text().replace('name = "default"', 'name = "audited"', 1)
    record = ", ".join(f'"{n}"' for n in RECORDED)
    ignored = ", ".join(f'"{p}"' for p in ignore)
    path = directory / f"audited-{len(ignore)}.toml"
    path.write_text(text + f'\n[audit]\nrecord = [{record}]\nignore_paths = [{ignored}]\n')
    return str(path)


def audited(session, run: str | None = None) -> list[levain.Event]:
    return [e for e in session.events() if e.type == "syscall.audited" and (run is None or e.run == run)]


def test_a_runs_execs_writes_and_connects_are_recorded_in_order(client, tmp_path):
    s = client.create_session(policy=audited_policy(tmp_path))
    control = client.create_session()
    try:
        script = ("echo a > a; cat a > b; mv b c; rm c; "
                  "python3 -c 'import socket; socket.socket().connect_ex((\"127.0.0.1\", 9))'; true")
        r = s.exec(script)
        assert r.exit_code == 0, r
        calls = audited(s, r.run_id)
        summary = [(e.payload["syscall"], e.payload.get("path") or e.payload.get("address")) for e in calls]
        # sh itself, its redirections, each program, python's connect, in order.
        expected = [("execve", "/bin/sh"), ("openat", "/workspace/a"), ("openat", "/workspace/b"),
                    ("execve", "/usr/bin/cat"), ("execve", "/usr/bin/mv"), ("renameat2", "/workspace/b"),
                    ("execve", "/usr/bin/rm"), ("unlinkat", "/workspace/c"), ("execve", "/usr/bin/python3"),
                    ("connect", "127.0.0.1:9")]
        got = [c for c in summary if c in expected]
        assert got == expected, summary
        cat = next(e for e in calls if e.payload.get("path") == "/usr/bin/cat")
        assert cat.payload["argv"] == ["cat", "a"] and cat.payload["exe"] == "/usr/bin/dash"
        assert cat.payload["pid"] > 1 and cat.payload["ppid"] >= 1 and cat.payload["decision"] == "record"
        rename = next(e for e in calls if e.payload["syscall"] == "renameat2")
        assert rename.payload["to"] == "/workspace/c"
        # Reads are not gated: "cat a" opened a for reading, no record of it.
        assert ("openat", "/workspace/a") in summary and summary.count(("openat", "/workspace/a")) == 1
        # Every record precedes the run's end.
        events = list(s.events())
        finished = next(e.seq for e in events if e.type == "run.finished" and e.run == r.run_id)
        assert all(e.seq < finished for e in calls)
        # Control: the same run in a session without [audit] records nothing.
        rc = control.exec(script)
        assert rc.exit_code == 0 and audited(control) == []
    finally:
        s.close()
        control.close()


MCP_EXEC = r"""
import json, os, sys, urllib.request
body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "exec", "arguments": {"command": sys.argv[1]}}}).encode()
req = urllib.request.Request(os.environ["LEVAIN_MCP_URL"], data=body, method="POST",
                             headers={"content-type": "application/json", "accept": "application/json, text/event-stream"})
print(urllib.request.urlopen(req, timeout=120).read().decode())
"""


def test_a_tool_calls_syscalls_name_the_call(supervisor, client, tmp_path):
    # An agent in the jail calls the built-in exec tool through the in-jail
    # MCP endpoint; the tool's run's calls carry the tool call's id.
    s = client.create_session(policy=audited_policy(tmp_path))
    try:
        r = s.exec(["python3", "-c", MCP_EXEC, "echo in > a; cat a > b; python3 -c 'import socket; "
                                               "socket.socket().connect_ex((\"127.0.0.1\", 9))'"])
        assert r.exit_code == 0 and '"isError":false' in r.stdout.replace(" ", ""), r.stdout
        events = list(s.events())
        started = [e for e in events if e.type == "tool.started"]
        assert len(started) == 1, [e.type for e in events]
        call = started[0].payload["levain.call_id"]
        mine = [e for e in events if e.type == "syscall.audited" and e.payload.get("gen_ai.tool.call.id") == call]
        summary = [(e.payload["syscall"], e.payload.get("path") or e.payload.get("address")) for e in mine]
        expected = [("execve", "/bin/sh"), ("openat", "/workspace/a"), ("openat", "/workspace/b"),
                    ("execve", "/usr/bin/cat"), ("execve", "/usr/bin/python3"), ("connect", "127.0.0.1:9")]
        assert [c for c in summary if c in expected] == expected, summary
        # They are the tool's run's, not the calling run's; the caller's own
        # exec of python3 carries no call id.
        assert {e.run for e in mine} != {r.run_id} and all(e.run for e in mine)
        own = [e for e in events if e.type == "syscall.audited" and e.run == r.run_id]
        assert own and all("gen_ai.tool.call.id" not in e.payload for e in own)
        # In order, between the call's start and its end.
        finished = next(e.seq for e in events if e.type == "tool.finished" and e.payload.get("levain.call_id") == call)
        assert all(started[0].seq < e.seq < finished for e in mine)
        # levain audit: the call's calls, filtered, as text and JSON.
        def audit(*args):
            p = subprocess.run([_binary(), "--connect", f"unix:{supervisor.socket}", "audit", *args],
                               capture_output=True, text=True, timeout=60)
            assert p.returncode == 0, p.stderr
            return p.stdout
        text = audit("--call", call)
        assert "cat a" in text and "127.0.0.1:9" in text and "/workspace/b" in text, text
        assert len(text.splitlines()) == len(mine)
        only = audit("--session", s.id, "--call", call, "--syscall", "connect").splitlines()
        assert len(only) == 1 and "connect" in only[0] and "127.0.0.1:9" in only[0], only
        import json as _json
        assert [e["seq"] for e in _json.loads(audit("--run", r.run_id, "--json"))] == [e.seq for e in own]
    finally:
        s.close()


def test_ignored_paths_and_reads_leave_no_record(client, tmp_path):
    s = client.create_session(policy=audited_policy(tmp_path, ignore=("/dev", "/proc", "/tmp")))
    try:
        r = s.exec("echo t > /tmp/scratch; cat /etc/hostname >/dev/null; echo w > kept.txt; echo u > /tmpx")
        paths = [e.payload.get("path") for e in audited(s, r.run_id) if e.payload["syscall"] == "openat"]
        assert "/workspace/kept.txt" in paths, paths  # control: a write elsewhere is recorded
        assert "/tmp/scratch" not in paths and "/dev/null" not in paths, paths
        assert "/tmpx" in paths, paths  # a prefix is a directory, not a string prefix (the write fails, the attempt is seen)
        assert "/etc/hostname" not in paths  # a read
    finally:
        s.close()


def test_relative_paths_resolve_against_the_callers_directory(client, tmp_path):
    s = client.create_session(policy=audited_policy(tmp_path))
    try:
        r = s.exec("mkdir -p d/e && cd d/e && echo x > ../f && python3 -c \"import os; "
                   "fd = os.open('/workspace/d', os.O_RDONLY); os.open('g', os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)\"")
        assert r.exit_code == 0, r
        paths = {e.payload.get("path") for e in audited(s, r.run_id) if e.payload["syscall"] == "openat"}
        assert {"/workspace/d/f", "/workspace/d/g"} <= paths, paths
    finally:
        s.close()


def test_many_execs_lose_no_record(client, tmp_path):
    sessions = [client.create_session(policy=audited_policy(tmp_path)) for _ in range(2)]
    try:
        n = 1000
        runs = [s.start(f"i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done") for s in sessions]
        for run in runs:
            assert run.wait().exit_code == 0
        for s, run in zip(sessions, runs):
            execs = [e for e in audited(s, run.id) if e.payload["syscall"] == "execve"]
            # Each record is one call, or a coalesced count of them: exact either way.
            total = sum(e.payload.get("count", 1) for e in execs if e.payload.get("path") in ("/bin/true", None))
            assert total == n, (total, len(execs))
    finally:
        for s in sessions:
            s.close()


def test_the_jail_cannot_take_the_listener_or_hide_from_it(client, tmp_path):
    s = client.create_session(policy=audited_policy(tmp_path))
    try:
        # A second listener anywhere under ours is refused by the kernel
        # (EBUSY); the supervisor's still sees the call after the attempt.
        probe = r"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
# BPF: return SECCOMP_RET_ALLOW; SECCOMP_SET_MODE_FILTER = 1, FLAG_NEW_LISTENER = 8.
class Filt(ctypes.Structure): _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]
class Prog(ctypes.Structure): _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Filt))]
f = (Filt * 1)(Filt(0x06, 0, 0, 0x7fff0000))
p = Prog(1, f)
libc.prctl(38, 1, 0, 0, 0)
r = libc.syscall(317, 1, 8, ctypes.byref(p))
print("listener", r, os.strerror(ctypes.get_errno()))
open("/workspace/after", "w").write("x")
"""
        r = s.exec(["python3", "-c", probe])
        assert r.exit_code == 0, r
        assert "listener -1 Device or resource busy" in r.stdout, r.stdout
        paths = [e.payload.get("path") for e in audited(s, r.run_id)]
        assert "/workspace/after" in paths, paths
    finally:
        s.close()


def test_a_bad_audit_section_is_refused_with_its_line(client, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text((REPO / "policies" / "default.toml").read_text() + '\n[audit]\nrecord = ["execve", "mount"]\n')
    with pytest.raises(levain.InvalidRequest) as e:
        client.create_session(policy=str(path))
    assert "audit.record" in str(e.value) and "mount" in str(e.value), str(e.value)


def test_kill_nine_while_a_jail_waits_leaves_no_jail_and_a_log_that_verifies(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("levain serve needs root")
    sv = Supervisor(tmp_path)
    sv.start()
    try:
        with levain.Client(f"unix:{sv.socket}") as c:
            s = c.create_session(policy=audited_policy(tmp_path))
            s.start("while true; do /bin/true; done")
            time.sleep(0.5)
            jail = [p for p in os.listdir("/proc") if p.isdigit() and _in_session(p, s.id)]
            assert jail, "the session's processes are visible before the kill"
        assert sv.process is not None
        sv.process.send_signal(signal.SIGKILL)
        sv.process.wait()
        sv.process = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in jail):
            time.sleep(0.05)
        assert not any(_alive(p) for p in jail), "a jail process survived its supervisor"
        verify = subprocess.run([_binary(), "log", "verify", "--state", sv.state], capture_output=True, text=True)
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        sv.stop()


def _in_session(pid: str, session: str) -> bool:
    try:
        return session in Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False


def _alive(pid: str) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1]
        return state != "Z"
    except OSError:
        return False
