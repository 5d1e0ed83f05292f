"""The synchronous client against a real `levain serve`: every call, with a
benign control beside each refusal."""

from __future__ import annotations

import os
import threading

import pytest

import levain
from levain import Address


# -- addresses and connection


def test_addresses_parse_like_the_cli(monkeypatch):
    assert Address.parse("unix:/run/x.sock") == Address(unix="/run/x.sock")
    assert Address.parse("/run/x.sock") == Address(unix="/run/x.sock")
    assert Address.parse("tcp:127.0.0.1:7480") == Address(host="127.0.0.1", port=7480)
    assert Address.parse("tcp:[::1]:7480") == Address(host="::1", port=7480)
    for bad in ("tcp:host", "tcp:host:0", "tcp:host:99999", "http://x", "unix:", "relative.sock"):
        with pytest.raises(ValueError):
            Address.parse(bad)
    monkeypatch.setenv("LEVAIN_CONNECT", "tcp:10.0.0.1:9")
    assert Address.resolve(None) == Address(host="10.0.0.1", port=9)
    monkeypatch.setenv("LEVAIN_CONNECT", "nonsense")
    with pytest.raises(ValueError, match="LEVAIN_CONNECT=nonsense"):
        Address.resolve(None)
    monkeypatch.delenv("LEVAIN_CONNECT")
    assert Address.resolve(None) == Address(unix="/run/levain/levain.sock")


def test_levain_connect_is_honoured_and_a_missing_socket_is_a_connection_error(supervisor, monkeypatch, tmp_path):
    monkeypatch.setenv("LEVAIN_CONNECT", f"unix:{supervisor.socket}")
    with levain.Client() as c:
        assert c.health()["status"] == "ok"
    with levain.Client(f"unix:{tmp_path}/nothing.sock") as c:
        with pytest.raises(levain.ConnectionFailed, match="nothing.sock"):
            c.health()


def test_health_and_version(client):
    assert client.health()["status"] == "ok"
    assert isinstance(client.version(), dict)


# -- sessions


def test_session_lifecycle(client):
    s = client.create_session(tenant="acme", labels={"team": "ml"}, memory="256M", pids=64, timeout="2m")
    try:
        info = s.info()
        assert info.id == s.id and info.status == "open" and info.tenant == "acme"
        assert info.labels == {"team": "ml"}
        assert info.limits["memory"] == 256 << 20 and info.limits["timeout"] == 120
        assert s.id in [x.id for x in client.list_sessions(tenant="acme")]
        assert s.id not in [x.id for x in client.list_sessions(tenant="nobody")]
        assert client.get_session(s.id).id == s.id
        assert s.reopen().status == "open"
    finally:
        closed = s.close()
    assert closed.status == "closed"
    with pytest.raises(levain.Conflict) as e:
        s.exec("true")
    assert e.value.status == 409 and e.value.field == "session"


def test_bad_input_is_a_typed_error_with_the_apis_message(client):
    with pytest.raises(levain.NotFound) as e:
        client.get_session("s-000000000000")
    assert e.value.field == "session" and "s-000000000000" in e.value.message
    with pytest.raises(levain.InvalidRequest) as e:
        client.create_session(memory="1K")
    assert e.value.field == "limits.memory"
    with pytest.raises(levain.InvalidRequest) as e:
        client.list_sessions(status="sleeping")
    assert e.value.field == "status"
    with pytest.raises(levain.NotFound):
        client.get_run("r-000000000000")
    with pytest.raises(levain.NotFound):
        client.decide("call-nothing", allow=True, reason="test")


# -- runs


def test_exec_output_exit_status_env_cwd_stdin(session):
    r = session.exec("echo out; echo err >&2; exit 3")
    assert (r.status, r.exit_code, r.exit_status) == ("failed", 3, 3)
    assert r.stdout == "out\n" and r.stderr == "err\n" and not r.ok
    with pytest.raises(levain.CommandFailed, match="exit status 3"):
        r.check()
    ok = session.exec(["/bin/sh", "-c", 'echo "$GREETING from $(pwd)"'], env={"GREETING": "hi"}, cwd="/tmp", check=True)
    assert ok.stdout == "hi from /tmp\n" and ok.exit_status == 0
    assert session.exec("tr a-z A-Z", stdin="abc\n").stdout == "ABC\n"
    raw = bytes(range(256))
    assert session.exec(["od", "-An", "-c"], stdin=raw).ok
    assert session.exec(["wc", "-c"], stdin=raw).stdout.strip() == "256"
    assert session.exec(["/nonexistent/tool"]).exit_status == 127


def test_a_timeout_kills_the_command_and_says_so(session):
    r = session.exec("echo started; sleep 30", timeout=1)
    assert r.status == "timed_out" and r.exit_status == 137 and r.stdout == "started\n"
    with pytest.raises(levain.CommandTimedOut):
        r.check()
    assert session.exec("true", timeout=5).ok  # control: a command within its timeout


def test_a_megabyte_of_stdout_arrives_whole(session):
    r = session.exec("head -c 1048576 /dev/urandom | od -An -tx1 -v | head -c 1048576")
    assert r.ok and len(r.stdout_bytes) == 1048576 and not r.output_truncated
    digest = session.exec("head -c 1048576 /dev/zero | sha256sum").stdout.split()[0]
    import hashlib
    assert digest == hashlib.sha256(b"\0" * 1048576).hexdigest()


def test_output_streams_to_callbacks_while_the_command_runs(session):
    # The command waits for a file the stdout callback writes: it ends only
    # if the first line reached the callback while it was still running.
    seen: list[bytes] = []
    errors: list[bytes] = []

    def on_stdout(chunk: bytes) -> None:
        seen.append(chunk)
        if b"first" in chunk and not session.files.exists("go"):
            session.files.write("go", "1")

    r = session.exec("echo first; echo warn >&2; while [ ! -e go ]; do sleep 0.02; done; echo second",
                     timeout=30, on_stdout=on_stdout, on_stderr=errors.append)
    assert r.ok, r
    assert b"".join(seen) == b"first\nsecond\n" and r.stdout == "first\nsecond\n"
    assert b"".join(errors) == b"warn\n"


def test_background_run_with_streamed_stdin(session):
    run = session.start(["wc", "-lc"], stdin_stream=True)
    for i in range(3):
        run.send_stdin(f"line {i}\n")
    run.send_stdin(b"\xff" * 1000 + b"\n")
    assert run.close_stdin() == 21 + 1001
    info = run.wait()
    assert info.status == "succeeded"
    assert run.stdout().split() == [b"4", b"1022"]


def test_signal_cancel_and_wait_with_a_timeout(session):
    run = session.start("trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done")
    for chunk in run.iter_output():
        if b"ready" in chunk:
            break
    assert run.wait(timeout=0.2).status == "running"
    run.signal("TERM")
    info = run.wait()
    assert info.status == "failed" and info.exit_code == 7 and run.stdout() == b"ready\ngot-term\n"
    with pytest.raises(levain.Conflict):
        run.signal("TERM")  # not running any more
    other = session.start("sleep 60")
    assert other.cancel().status == "cancelled"
    assert client_of(session).get_run(other.id).exit_status == 137


def client_of(session: levain.Session) -> levain.Client:
    return session.client


def test_five_commands_in_parallel(session):
    results: dict[int, levain.ExecResult] = {}

    def one(i: int) -> None:
        results[i] = session.exec(f"sleep 0.3; echo {i}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(5))
    assert all(results[i].ok and results[i].stdout == f"{i}\n" for i in range(5))
    runs = [r.id for r in session.client.list_runs(session=session.id)]
    assert {results[i].run_id for i in range(5)} <= set(runs)


# -- files


def test_files_binary_unicode_list_stat_remove(session):
    blob = bytes(range(256)) * 64
    assert session.files.write("data/blob.bin", blob) == len(blob)
    assert session.files.read("data/blob.bin") == blob
    assert session.files.read("/workspace/data/blob.bin") == blob  # absolute under /workspace
    name = "data/naïve 日本 %.txt"
    session.files.write(name, "ünïcödé ✓\n")
    assert session.files.read_text(name) == "ünïcödé ✓\n"
    assert session.exec(["cat", f"/workspace/{name}"]).stdout == "ünïcödé ✓\n"
    entries = {e.name: e for e in session.files.list("data")}
    assert set(entries) == {"blob.bin", "naïve 日本 %.txt"}
    assert entries["blob.bin"].type == "file" and entries["blob.bin"].size == len(blob)
    assert entries["blob.bin"].path == "data/blob.bin"
    st = session.files.stat("data/blob.bin")
    assert st.size == len(blob) and st.mode == 0o644
    session.files.write("data/script.sh", "#!/bin/sh\necho ran\n", mode=0o755)
    assert session.files.stat("data/script.sh").mode == 0o755
    assert session.exec(["/workspace/data/script.sh"]).stdout == "ran\n"
    assert session.files.exists("data") and not session.files.exists("data/missing")
    with pytest.raises(levain.Conflict) as e:
        session.files.remove("data")
    assert e.value.errno == "EISDIR" and "recursive" in e.value.message
    session.files.remove("data/blob.bin")
    assert not session.files.exists("data/blob.bin")
    session.files.remove("data", recursive=True)
    assert not session.files.exists("data")
    with pytest.raises(levain.NotFound) as e:
        session.files.read("data/blob.bin")
    assert e.value.errno == "ENOENT"


def test_mkdir_and_rename(session):
    session.files.mkdir("tree")
    with pytest.raises(levain.Conflict) as e:
        session.files.mkdir("tree")
    assert e.value.errno == "EEXIST"
    session.files.mkdir("tree", parents=True)  # exists: no error with parents
    with pytest.raises(levain.NotFound):
        session.files.mkdir("deep/er/still")
    session.files.mkdir("/workspace/deep/er/still", parents=True, mode=0o700)
    assert session.files.stat("deep/er/still").is_dir and session.files.stat("deep/er/still").mode == 0o700
    assert session.exec("stat -c %U /workspace/deep/er/still").stdout.strip() != "root"  # the jail user's
    session.files.write("tree/a.txt", "a")
    session.files.rename("tree/a.txt", "deep/b.txt")
    assert not session.files.exists("tree/a.txt") and session.files.read_text("deep/b.txt") == "a"
    session.files.write("tree/c.txt", "c")
    session.files.rename("tree/c.txt", "deep/b.txt")  # a file there is replaced
    assert session.files.read_text("deep/b.txt") == "c"
    with pytest.raises(levain.Conflict) as e:
        session.files.rename("deep/b.txt", "deep")  # onto a non-empty directory
    assert e.value.errno in ("EISDIR", "ENOTEMPTY")
    with pytest.raises(levain.NotFound):
        session.files.rename("deep/b.txt", "nowhere/b.txt")
    with pytest.raises(levain.InvalidRequest) as e:
        session.files.rename("deep/b.txt", "../b.txt")
    assert e.value.field == "to"
    session.files.rename("deep", "moved")  # a directory with its content
    assert session.files.read_text("moved/b.txt") == "c"
    kinds = [e.type for e in session.events()]
    assert "file.mkdir" in kinds and "file.renamed" in kinds


def test_absolute_paths_in_the_jails_tmp_and_workspace(session):
    # /tmp is the jail's own: what a run writes there the files API reads, and back.
    session.exec("echo from-run > /tmp/run.txt", check=True)
    assert session.files.read_text("/tmp/run.txt") == "from-run\n"
    session.files.write("/tmp/deep/api.txt", "from-api\n")
    assert session.exec("cat /tmp/deep/api.txt").stdout == "from-api\n"
    assert "run.txt" in [e.name for e in session.files.list("/tmp")]
    assert [e.path for e in session.files.list("/tmp/deep")] == ["/tmp/deep/api.txt"]
    assert session.files.stat("/tmp/deep/api.txt").size == 9
    session.files.mkdir("/tmp/made/here", parents=True)
    session.files.rename("/tmp/deep/api.txt", "/tmp/made/here/moved.txt")
    assert session.exec("cat /tmp/made/here/moved.txt").stdout == "from-api\n"
    with pytest.raises(levain.InvalidRequest) as e:
        session.files.rename("/tmp/made/here/moved.txt", "moved.txt")  # /tmp to /workspace: two file systems
    assert e.value.errno == "EXDEV"
    session.files.remove("/tmp/made", recursive=True)
    assert not session.files.exists("/tmp/made")
    # /workspace/... is the workspace.
    session.files.write("/workspace/abs.txt", "abs")
    assert session.files.read_text("abs.txt") == "abs"
    # A symlink in /tmp that leads out is not followed.
    session.exec("ln -s /etc/passwd /tmp/out-link", check=True)
    with pytest.raises(levain.InvalidRequest) as e:
        session.files.read("/tmp/out-link")
    assert e.value.errno in ("ELOOP", "EXDEV")
    # The jail user's permissions hold in /tmp too.
    session.exec("echo s > /tmp/locked && chmod 000 /tmp/locked", check=True)
    with pytest.raises(levain.PermissionDenied):
        session.files.read("/tmp/locked")


def test_files_the_jail_user_cannot_touch_are_refused_as_permission_errors(session):
    session.exec("echo secret > locked.txt && chmod 000 locked.txt && mkdir closed && chmod 000 closed", check=True)
    with pytest.raises(levain.PermissionDenied) as e:
        session.files.read("locked.txt")
    assert e.value.errno == "EACCES" and e.value.status == 409
    with pytest.raises(levain.PermissionDenied):
        session.files.write("closed/new.txt", "x")
    session.exec("chmod 644 locked.txt", check=True)
    assert session.files.read_text("locked.txt") == "secret\n"  # control


def test_paths_that_leave_the_workspace_are_refused(session):
    for bad in ("../etc/passwd", "a/../../x", "/etc/passwd", "", "/tmp/../etc/passwd", "/workspace/../etc/passwd", "/proc/self/environ"):
        with pytest.raises(levain.InvalidRequest) as e:
            session.files.read(bad)
        assert e.value.field == "path", bad
    with pytest.raises(levain.InvalidRequest, match="reaches /workspace and /tmp"):
        session.files.write("/etc/evil", "x")
    session.exec("ln -s /etc/passwd out-link && ln -s /workspace/in.txt in-link && echo in > in.txt", check=True)
    with pytest.raises(levain.InvalidRequest) as e:
        session.files.read("out-link")
    assert e.value.errno in ("ELOOP", "EXDEV")
    with pytest.raises(levain.InvalidRequest) as e:
        session.files.write("out-link", "overwrite?")
    assert session.exec("cat /etc/passwd | head -c 4").stdout == "root"  # not written through the link
    assert session.files.read_text("in.txt") == "in\n"  # control


def test_upload_and_download_report_each_file(session):
    session.exec("mkdir -p taken/dir && mkdir closed && chmod 000 closed", check=True)
    results = session.files.upload({
        "up/a.txt": "a",
        "taken/dir": "a directory is in the way",
        "closed/b.txt": "cannot enter",
        "up/b.bin": b"\x00\x01",
        "../escape": "no",
    })
    assert [r.path for r in results] == ["up/a.txt", "taken/dir", "closed/b.txt", "up/b.bin", "../escape"]
    assert [r.ok for r in results] == [True, False, False, True, False]
    assert isinstance(results[1].error, levain.Conflict) and results[1].error.errno == "EISDIR"
    assert isinstance(results[2].error, levain.PermissionDenied)
    assert isinstance(results[4].error, levain.InvalidRequest)
    down = session.files.download(["up/a.txt", "missing.txt", "up/b.bin"])
    assert [d.content for d in down] == [b"a", None, b"\x00\x01"]
    assert isinstance(down[1].error, levain.NotFound)


# -- events, log, usage, tools, approvals


def test_events_log_usage_and_verify(session, client):
    r = session.exec("echo logged")
    types = [e.type for e in session.events()]
    assert types[0] == "session.opened" and "run.finished" in types
    run_events = list(client.run(r.run_id).events(follow=True))
    assert run_events[-1].type == "run.finished" and run_events[-1].payload["stdout_bytes"] == 7
    by_run = client.log_events(run=r.run_id)
    assert [e.id for e in by_run] == [e.id for e in run_events]
    after = session.events(after=run_events[-1].seq)
    assert all(e.seq > run_events[-1].seq for e in after)
    assert client.verify_log(session.id)["ok"] is True
    usage = client.usage(session=session.id)
    assert usage["total"]["requests"] == 0 and usage["by"] == "model"
    assert isinstance(session.tools(), list)
    assert client.approvals(session=session.id) == []


def test_the_package_installs_with_pip(tmp_path):
    # As a user would: `pip install ./clients/python` (the build backend,
    # setuptools, comes from PyPI in pip's isolated build environment). From
    # a copy, so that setuptools' build/ and egg-info stay out of the tree.
    import shutil
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = tmp_path / "python"
    shutil.copytree(root, source, ignore=shutil.ignore_patterns("tests", "build", "*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--target", str(target), str(source)], check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-c", "import levain, sys; print(levain.__file__); print(levain.__version__)"],
                         env={**os.environ, "PYTHONPATH": str(target)}, cwd=str(tmp_path), check=True,
                         capture_output=True, text=True).stdout.split()
    assert out[0].startswith(str(target)) and out[1] == levain.__version__
    assert (target / "levain" / "py.typed").exists()
    assert not os.path.exists(os.path.join(root, "build"))


def test_inline_output_comes_with_the_finished_run(client, session):
    import base64
    path = f"/v1/sessions/{session.id}/runs"
    r = client._request("POST", path, json={"command": "printf 'ab\\0\\377'; printf '%030d' 0 >&2", "wait": True,
                                            "inline_output": 16})
    assert base64.b64decode(r["stdout_base64"]) == b"ab\x00\xff"  # binary, whole
    assert "stderr_base64" not in r and r["stderr_bytes"] == 30  # longer than asked: read from its route
    assert client.run(r["id"]).stderr() == b"0" * 30
    empty = client._request("POST", path, json={"argv": ["true"], "wait": True, "inline_output": 16})
    assert empty["stdout_base64"] == "" and empty["stderr_base64"] == ""
    plain = client._request("POST", path, json={"argv": ["echo", "x"], "wait": True})
    assert "stdout_base64" not in plain  # only when asked
    for bad in ({"argv": ["true"], "inline_output": 16}, {"argv": ["true"], "wait": True, "inline_output": 2 << 20}):
        with pytest.raises(levain.InvalidRequest) as e:
            client._request("POST", path, json=bad)
        assert e.value.field == "inline_output"
    # exec uses it, and falls back to the output route above its size.
    assert session.exec("head -c 300000 /dev/zero | tr '\\0' y").stdout == "y" * 300000
    assert session.exec("echo small").stdout == "small\n"
