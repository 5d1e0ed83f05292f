"""The audit layer ([audit] in a policy): seccomp user notification in the
supervisor, each gated call a `syscall.audited` event joined to its run,
against a real `levain serve` and real jails."""

from __future__ import annotations

import json
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


def audited_policy(directory: Path, ignore: tuple[str, ...] = ("/dev", "/proc"), deny: str = "") -> str:
    text = (REPO / "policies" / "default.toml").read_text().replace('name = "default"', 'name = "audited"', 1)
    record = ", ".join(f'"{n}"' for n in RECORDED)
    ignored = ", ".join(f'"{p}"' for p in ignore)
    path = directory / f"audited-{len(ignore)}-{abs(hash(deny))}.toml"
    path.write_text(text + f'\n[audit]\nrecord = [{record}]\nignore_paths = [{ignored}]\n{deny}')
    return str(path)


DENY = """
[audit.deny.programs]
syscalls = ["execve", "execveat"]
outside = ["/usr", "/bin"]
errno = "EACCES"
[audit.deny.protected]
syscalls = ["openat", "creat", "unlinkat", "renameat2"]
beneath = ["/workspace/protected"]
[audit.deny.ssh]
syscalls = ["connect"]
ports = [22]
"""


def test_deny_rules_refuse_log_and_let_the_rest_through(client, tmp_path):
    s = client.create_session(policy=audited_policy(tmp_path, deny=DENY))
    try:
        s.exec("mkdir -p protected && cp /usr/bin/true ./mytrue", check=True)
        # An exec outside the allowlist: EACCES in the jail; /usr/bin/true: fine.
        r = s.exec("./mytrue; echo \"own: $?\"; /usr/bin/true; echo \"usr: $?\"")
        assert "own: 126" in r.stdout and "usr: 0" in r.stdout, (r.stdout, r.stderr)
        assert "Permission denied" in r.stderr, r.stderr
        # A write beneath the denied prefix: EPERM; elsewhere: fine.
        w = s.exec("echo x > protected/a; echo \"prot: $?\"; echo y > open.txt; echo \"open: $?\"; cat open.txt")
        assert "prot: 2" in w.stdout and "open: 0" in w.stdout and "y" in w.stdout, (w.stdout, w.stderr)
        assert "Operation not permitted" in w.stderr, w.stderr
        # A connect to port 22: refused before it leaves; port 9: goes on (refused by nobody listening).
        c = s.exec(["python3", "-c", "import socket\nfor p in (22, 9):\n  print(p, socket.socket().connect_ex(('127.0.0.1', p)))"])
        assert "22 1\n" in c.stdout and "9 111\n" in c.stdout, c.stdout  # EPERM, ECONNREFUSED
        denied = [e for e in audited(s) if e.payload["decision"] == "deny"]
        summary = [(e.payload["syscall"], e.payload.get("levain.rule"), e.payload.get("path") or e.payload.get("address"))
                   for e in denied]
        assert ("execve", "programs", "/workspace/mytrue") in summary, summary
        assert ("openat", "protected", "/workspace/protected/a") in summary, summary
        assert ("connect", "ssh", "127.0.0.1:22") in summary, summary
        assert len(denied) == 3, summary
        # The harness itself (outside the allowlist) started: the first exec is never refused.
        first = audited(s)[0]
        assert first.payload["path"] == "/.levain/levain-harness" and first.payload["decision"] == "record"
        # The file API goes through the same gate (the harness writes as the jail user).
        with pytest.raises(levain.Conflict):
            s.files.write("protected/b", "no")
        s.files.write("fine.txt", "yes")  # control
    finally:
        s.close()


RACE = r"""
import ctypes, os, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
allowed, denied = b"/usr/bin/env", b"/workspace/x"
assert len(allowed) == len(denied)
buf = ctypes.create_string_buffer(allowed, 64)
argv = (ctypes.c_char_p * 2)(buf.value, None)
envp = (ctypes.c_char_p * 1)(None)
n, refused, ran = int(sys.argv[1]), 0, 0
for i in range(n):
    pid = os.fork()
    if pid == 0:
        stop = False
        def flip():
            k = 0
            while not stop:
                ctypes.memmove(buf, denied if k % 2 else allowed, len(allowed))
                k += 1
        threading.Thread(target=flip, daemon=True).start()
        libc.execve(buf, argv, envp)
        os._exit(100 + ctypes.get_errno())
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 100 + 13:
        refused += 1
    elif code == 0:
        ran += 1
print(refused, ran)
"""


def test_a_swapped_path_cannot_turn_a_denied_exec_into_a_run_one(client, tmp_path):
    # A thread flips the path between an allowed and a denied program while
    # the exec waits: whenever the supervisor refused, nothing ran (a deny
    # holds whatever the memory says afterwards). A check that saw the
    # allowed path can still run the denied one: recording is not a
    # boundary (docs/AUDIT.md), and this test counts how often.
    s = client.create_session(policy=audited_policy(tmp_path, deny=DENY))
    try:
        s.exec("printf '#!/bin/sh\\necho ran >> /workspace/ran\\n' > x && chmod +x x", check=True)
        n = 300
        r = s.exec(["python3", "-c", RACE, str(n)])
        assert r.exit_code == 0, (r.stdout, r.stderr)
        refused, ran = map(int, r.stdout.split())
        denied = [e for e in audited(s, r.run_id) if e.payload["decision"] == "deny" and e.payload["syscall"] == "execve"]
        # Every refusal recorded is a child that got EACCES, and the reverse.
        assert len(denied) == refused, (len(denied), refused, ran)
        assert all(e.payload["path"] == "/workspace/x" for e in denied)
        # The race really raced: both outcomes happened.
        assert refused > 0 and ran > 0, (refused, ran)
        escaped = s.exec("cat ran 2>/dev/null | wc -l").stdout.strip()
        print(f"race: {n} execs, {refused} refused, {ran} ran, {escaped} ran the denied program after an allowed check")
    finally:
        s.close()


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


def test_an_agent_runs_timeline_nests_each_tool_calls_syscalls(tmp_path, provider_url):
    if os.geteuid() != 0:
        pytest.skip("levain serve needs root")
    import httpx2
    sv = Supervisor(tmp_path)
    sv.config.write_text(sv.config.read_text() + f"""
[providers.openai]
kind = "openai"
base_url = "{provider_url}/v1"
api_key_env = "LEVAIN_TEST_PROVIDER_KEY"

[models."gpt-4o-mini"]
provider = "openai"
""")
    os.environ["LEVAIN_TEST_PROVIDER_KEY"] = "scripted"
    sv.start()
    try:
        script = {"replies": [
            {"tool_calls": [{"name": "exec", "arguments": {"command": "cat /etc/hostname > seen.txt; mv seen.txt kept.txt"}}]},
            {"text": "done"},
        ]}
        httpx2.post(provider_url + "/_script", json=script).raise_for_status()
        with levain.Client(f"unix:{sv.socket}") as c:
            s = c.create_session(policy=audited_policy(tmp_path))
            agent = 'name = "auditor"\nmodel = "gpt-4o-mini"\ntools = ["exec"]\nmax_steps = 4\nwall_time = "60s"\n'
            run = s.agent_run(agent, "go")
            assert run.status == "succeeded", run
            show = subprocess.run([_binary(), "--connect", f"unix:{sv.socket}", "log", "show", run.id],
                                  capture_output=True, text=True, timeout=60)
            assert show.returncode == 0, show.stderr
            lines = show.stdout.splitlines()
            tool = next(i for i, l in enumerate(lines) if " tool exec [" in l)
            nested = [l for l in lines[tool + 1:] if "⤷" in l]
            text = "\n".join(nested)
            assert "execve" in text and "/bin/sh -c" in text and "/workspace/seen.txt" in text, show.stdout
            assert "renameat2" in text and "-> /workspace/kept.txt" in text, show.stdout
            # Nested right under the call, before its result.
            result = next(i for i, l in enumerate(lines) if i > tool and "→" in l and " ms:" in l)
            assert all(tool < lines.index(l) < result for l in nested), show.stdout
            timeline = json.loads(subprocess.run([_binary(), "--connect", f"unix:{sv.socket}", "log", "show", run.id, "--json"],
                                                 capture_output=True, text=True, timeout=60).stdout)["timeline"]
            started = next(i for i in timeline if i["type"] == "tool.started")
            assert {e["payload"]["syscall"] for e in started["syscalls"]} >= {"execve", "openat", "renameat2"}
            s.close()
    finally:
        sv.stop()


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


def test_a_loop_of_identical_calls_is_one_counted_record(client, tmp_path):
    s = client.create_session(policy=audited_policy(tmp_path))
    try:
        r = s.exec(["python3", "-c", "import os\nfor i in range(3000):\n  os.close(os.open('same.txt', os.O_WRONLY | os.O_CREAT, 0o644))\n"
                                     "for i in range(5):\n  os.close(os.open('other%d.txt' % i, os.O_WRONLY | os.O_CREAT, 0o644))"])
        assert r.exit_code == 0, r
        opens = [e for e in audited(s, r.run_id) if e.payload["syscall"] == "openat"]
        same = [e for e in opens if e.payload["path"] == "/workspace/same.txt"]
        # Exact: every call counted; few records (a burst split only where
        # the writer took what was pending).
        assert sum(e.payload.get("count", 1) for e in same) == 3000
        assert len(same) < 50, len(same)
        # Control: different calls stay apart.
        assert sorted(e.payload["path"] for e in opens if "other" in e.payload["path"]) == [
            f"/workspace/other{i}.txt" for i in range(5)]
    finally:
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
