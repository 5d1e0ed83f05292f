"""Levain as an MCP server, used by the reference `mcp` Python SDK's client:
`levain mcp` over stdio, and the daemon's /mcp over streamable HTTP (on the
test supervisor's Unix socket)."""

from __future__ import annotations

import asyncio
import base64
import os
import time

import httpx2
import pytest

import levain
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from conftest import _binary

TOOLS = {"create_session", "list_sessions", "close_session", "pause_session", "resume_session", "exec",
         "start_process", "poll_process", "write_stdin", "signal_process", "cancel_process",
         "read_file", "write_file", "list_files", "stat_file"}


def stdio(supervisor) -> Client:
    return Client(StdioServerParameters(command=_binary(), args=["--connect", f"unix:{supervisor.socket}", "mcp"],
                                        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}))


def http(supervisor) -> Client:
    client = httpx2.AsyncClient(transport=httpx2.AsyncHTTPTransport(uds=supervisor.socket),
                                timeout=httpx2.Timeout(30, read=300))
    return Client(streamable_http_client("http://localhost/mcp", http_client=client))


def text(result) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "text", None) is not None)


async def call(client, name, args=None, **kw):
    return await client.call_tool(name, args or {}, **kw)


async def open_session(client) -> str:
    r = await call(client, "create_session", {"labels": {"suite": "mcp"}})
    assert not r.is_error, text(r)
    return r.structured_content["id"]


def test_stdio_tools_exec_streams_and_files(supervisor):
    async def main():
        async with stdio(supervisor) as client:
            tools = await client.list_tools()
            assert {t.name for t in tools.tools} == TOOLS
            schema = {t.name: t.input_schema for t in tools.tools}
            assert schema["exec"]["required"] == ["session"]
            sid = await open_session(client)
            try:
                # Output is streamed as progress notifications while the command runs.
                seen: list[tuple[float, str]] = []

                async def progress(done, total, message):
                    seen.append((time.monotonic(), message or ""))

                r = await call(client, "exec", {"session": sid, "command":
                                                "for i in 1 2 3; do echo line $i; sleep 0.3; done; echo oops >&2; exit 3"},
                               progress_callback=progress)
                finished = time.monotonic()
                assert not r.is_error, text(r)
                s = r.structured_content
                assert s["exit_status"] == 3 and s["status"] == "failed"
                assert s["stdout"] == "line 1\nline 2\nline 3\n" and s["stderr"] == "oops\n"
                assert "exit status 3" in text(r) and "line 2" in text(r)
                streamed = "".join(m for _, m in seen if not m.startswith("[stderr] "))
                assert streamed == "line 1\nline 2\nline 3\n"
                assert any(m == "[stderr] oops\n" for _, m in seen)
                # The first line arrived well before the command ended (0.9 s of sleeps).
                assert finished - seen[0][0] > 0.4

                # argv, env, cwd, stdin; a large output is cut to max_output_bytes, the rest by offset.
                r = await call(client, "exec", {"session": sid, "argv": ["sh", "-c", "echo $X; pwd; cat"], "env": {"X": "ex"},
                                                "cwd": "/tmp", "stdin": "fed\n"})
                assert r.structured_content["stdout"] == "ex\n/tmp\nfed\n", text(r)
                r = await call(client, "exec", {"session": sid, "command": "head -c 100000 /dev/zero | tr '\\0' a",
                                                "max_output_bytes": 1000})
                s = r.structured_content
                assert len(s["stdout"]) == 1000 and s["output_cut"] is True and s["stdout_offset"] == 1000
                r = await call(client, "poll_process", {"run": s["id"], "stdout_offset": 1000, "max_output_bytes": 4 << 20})
                assert len(r.structured_content["stdout"]) == 99000

                # Files: text, bytes, listing, stat; paths are the jail's.
                r = await call(client, "write_file", {"session": sid, "path": "notes/a.txt", "content": "héllo\n"})
                assert not r.is_error, text(r)
                r = await call(client, "read_file", {"session": sid, "path": "/workspace/notes/a.txt"})
                assert text(r) == "héllo\n" and r.structured_content["encoding"] == "utf-8"
                blob = bytes(range(256))
                r = await call(client, "write_file", {"session": sid, "path": "/tmp/b.bin",
                                                      "content": base64.b64encode(blob).decode(), "encoding": "base64"})
                assert not r.is_error, text(r)
                r = await call(client, "read_file", {"session": sid, "path": "/tmp/b.bin"})
                assert r.structured_content["encoding"] == "base64"
                assert base64.b64decode(r.structured_content["content"]) == blob
                r = await call(client, "list_files", {"session": sid, "path": "notes"})
                assert "a.txt" in text(r)
                r = await call(client, "stat_file", {"session": sid, "path": "notes/a.txt"})
                assert r.structured_content["size"] == len("héllo\n".encode())
            finally:
                await call(client, "close_session", {"session": sid})

    asyncio.run(main())


def test_stdio_long_process_with_stdin_and_signal(supervisor):
    async def main():
        async with stdio(supervisor) as client:
            sid = await open_session(client)
            try:
                r = await call(client, "start_process", {"session": sid, "command": "while read l; do echo got:$l; done; echo bye",
                                                         "stdin": True})
                assert not r.is_error, text(r)
                run = r.structured_content["id"]
                r = await call(client, "write_stdin", {"run": run, "data": "one\n"})
                assert not r.is_error, text(r)
                out, offset = "", 0
                deadline = time.monotonic() + 30
                while "got:one" not in out and time.monotonic() < deadline:
                    r = await call(client, "poll_process", {"run": run, "stdout_offset": offset, "wait": 0.2})
                    out += r.structured_content["stdout"]
                    offset = r.structured_content["stdout_offset"]
                assert out == "got:one\n"
                assert r.structured_content["exit_status"] is None  # still running, waiting for input
                r = await call(client, "write_stdin", {"run": run, "data": "two\n", "eof": True})
                assert not r.is_error, text(r)
                r = await call(client, "poll_process", {"run": run, "stdout_offset": offset, "wait": 30})
                assert r.structured_content["exit_status"] == 0
                assert r.structured_content["stdout"] == "got:two\nbye\n"
                # stdin is closed now: a further write is a tool error.
                r = await call(client, "write_stdin", {"run": run, "data": "three\n"})
                assert r.is_error and "no open stdin" in text(r)

                # A process stopped by a signal.
                r = await call(client, "start_process", {"session": sid, "command": "sleep 60"})
                run = r.structured_content["id"]
                deadline = time.monotonic() + 30
                while True:
                    r = await call(client, "signal_process", {"run": run, "signal": "TERM"})
                    if not r.is_error or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.05)  # 409 until the process is running
                assert not r.is_error, text(r)
                r = await call(client, "poll_process", {"run": run, "wait": 30})
                assert r.structured_content["signal"] == 15 and r.structured_content["exit_status"] == 143
            finally:
                await call(client, "close_session", {"session": sid})

    asyncio.run(main())


def test_denied_actions_are_tool_errors(supervisor):
    async def main():
        async with stdio(supervisor) as client:
            sid = await open_session(client)
            # Outside the jail's workspace and /tmp: refused by the API, a tool error.
            r = await call(client, "read_file", {"session": sid, "path": "/proc/self/environ"})
            assert r.is_error and "invalid_request" in text(r)
            r = await call(client, "read_file", {"session": sid, "path": "../etc/passwd"})
            assert r.is_error
            r = await call(client, "read_file", {"session": sid, "path": "missing.txt"})
            assert r.is_error and "ENOENT" in text(r)
            # The jail user cannot read a chmod 000 file: EACCES.
            r = await call(client, "exec", {"session": sid, "command": "echo s > secret && chmod 000 secret"})
            assert r.structured_content["exit_status"] == 0
            r = await call(client, "read_file", {"session": sid, "path": "secret"})
            assert r.is_error and "EACCES" in text(r)
            # Bad arguments name the key; an id is never spliced into a URL unchecked.
            r = await call(client, "exec", {"session": sid, "command": "true", "bogus": 1})
            assert r.is_error and "unknown argument bogus" in text(r)
            r = await call(client, "exec", {"session": "../v1/sessions", "command": "true"})
            assert r.is_error and "not a Levain id" in text(r)
            r = await call(client, "no_such_tool", {})
            assert r.is_error
            # A closed session refuses commands: a tool error, and the server goes on.
            r = await call(client, "close_session", {"session": sid})
            assert not r.is_error and r.structured_content["status"] == "closed"
            r = await call(client, "exec", {"session": sid, "command": "true"})
            assert r.is_error and "closed" in text(r)
            # Control: the server still answers.
            assert len((await client.list_tools()).tools) == len(TOOLS)

    asyncio.run(main())


def test_pause_freezes_runs_until_resume(client, session):
    """A paused session's processes do not advance; files stay served; exec is refused."""
    # Written aside and renamed: the file is never empty, also when the
    # pause lands between a truncation and the write that follows it
    # (frozen there, a file written in place stayed empty: a flaky test).
    counter = session.start("i=0; while :; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; sleep 0.02; done")

    def count() -> int:
        raw = session.files.read_text("/tmp/count").strip()
        assert raw, "the counter file is empty"
        return int(raw)

    deadline = time.monotonic() + 30
    while not session.files.exists("/tmp/count") and time.monotonic() < deadline:
        time.sleep(0.05)
    # Control: running, it advances.
    a = count()
    time.sleep(0.5)
    b = count()
    assert b > a
    info = session.pause()
    assert info.paused is True and client.get_session(session.id).paused is True
    frozen = count()
    time.sleep(0.6)
    assert count() == frozen  # files are still served, and nothing moved
    with pytest.raises(levain.APIError) as refused:
        session.exec("true")
    assert refused.value.status == 409 and "paused" in refused.value.message
    assert session.pause().paused is True  # pausing twice changes nothing
    info = session.resume()
    assert info.paused is False
    time.sleep(0.5)
    assert count() > frozen
    assert session.exec("echo back").stdout == "back\n"
    counter.cancel()
    types = [e.type for e in session.events(follow=False)]
    assert "session.paused" in types and "session.resumed" in types


def test_http_endpoint_on_the_daemon(supervisor):
    async def main():
        async with http(supervisor) as client:
            tools = await client.list_tools()
            assert {t.name for t in tools.tools} == TOOLS
            sid = await open_session(client)
            try:
                seen: list[str] = []

                async def progress(done, total, message):
                    seen.append(message or "")

                r = await call(client, "exec", {"session": sid, "command": "echo over; sleep 0.3; echo http; exit 4"},
                               progress_callback=progress)
                assert not r.is_error, text(r)
                assert r.structured_content["stdout"] == "over\nhttp\n" and r.structured_content["exit_status"] == 4
                # Progress reaches an HTTP client too (on the session's GET stream).
                assert "".join(seen) == "over\nhttp\n"
                r = await call(client, "pause_session", {"session": sid})
                assert r.structured_content["paused"] is True
                r = await call(client, "exec", {"session": sid, "command": "true"})
                assert r.is_error and "paused" in text(r)
                r = await call(client, "resume_session", {"session": sid})
                assert r.structured_content["paused"] is False
                r = await call(client, "read_file", {"session": sid, "path": "/etc/shadow"})
                assert r.is_error
            finally:
                await call(client, "close_session", {"session": sid})

    asyncio.run(main())


def test_http_endpoint_refuses_web_pages_and_unknown_sessions(supervisor):
    with httpx2.Client(transport=httpx2.HTTPTransport(uds=supervisor.socket)) as h:
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        r = h.post("http://localhost/mcp", json=init, headers={**headers, "Origin": "http://evil.example"})
        assert r.status_code == 403
        r = h.post("http://localhost/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                   headers={**headers, "Mcp-Session-Id": "not-a-session"})
        assert r.status_code == 404
        # Control: the same initialize without an Origin opens a session.
        with h.stream("POST", "http://localhost/mcp", json=init, headers=headers) as r:
            assert r.status_code == 200 and r.headers.get("mcp-session-id")
            sid = r.headers["mcp-session-id"]
        assert h.delete("http://localhost/mcp", headers={"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18"}).status_code == 200


def test_pause_while_runs_start_keeps_the_session_alive(supervisor, client, session):
    """Pauses while runs are being started, again and again: a run whose
    process is still starting is not frozen under the harness (which waits
    for its exec, and would stop serving the session: files, heartbeats),
    so files stay served while paused; every run ends after resume."""
    import threading

    stop = threading.Event()
    outcomes: list[object] = []

    def submit() -> None:
        with levain.Client(f"unix:{supervisor.socket}") as c:
            s = c.session(session.id)
            while not stop.is_set():
                try:
                    outcomes.append(s.exec("echo run").stdout)
                except levain.APIError as e:
                    outcomes.append(e.status)  # 409 while paused

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    session.files.write("probe.txt", "ok")
    try:
        with levain.Client(f"unix:{supervisor.socket}", timeout=5) as quick:
            files = quick.session(session.id).files
            for _ in range(40):
                session.pause()
                # Served while paused, at once (a stalled harness would time out here).
                assert files.read_text("probe.txt") == "ok"
                session.resume()
                time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert all(r == 409 or r == "run\n" for r in outcomes), set(map(str, outcomes))
    assert outcomes.count("run\n") > 20
    assert session.exec("echo alive").stdout == "alive\n"


def test_paused_session_refuses_agent_runs(session):
    session.pause()
    try:
        with pytest.raises(levain.APIError) as refused:
            session.agent_run('name = "a"\nmodel = "gpt-4o-mini"\n', "hello")
        assert refused.value.status == 409 and "paused" in refused.value.message
    finally:
        session.resume()


def test_stdin_slots_are_freed_when_processes_end(supervisor):
    """More processes with stdin than the 64 slots, each ending on its own
    without an eof: their pipes close with them, so the next still opens."""
    async def main():
        async with stdio(supervisor) as client:
            sid = await open_session(client)
            try:
                for k in range(70):
                    r = await call(client, "start_process", {"session": sid, "command": "true", "stdin": True})
                    assert not r.is_error, f"process {k}: {text(r)}"
                    run = r.structured_content["id"]
                    r = await call(client, "poll_process", {"run": run, "wait": 30})
                    assert r.structured_content["exit_status"] == 0
                    # Control: a write to a process that has ended is refused.
                    if k == 0:
                        for _ in range(100):
                            r = await call(client, "write_stdin", {"run": run, "data": "late\n"})
                            if r.is_error:
                                break
                            await asyncio.sleep(0.05)
                        assert r.is_error
            finally:
                await call(client, "close_session", {"session": sid})

    asyncio.run(main())


def test_http_sessions_get_is_405_and_requests_stream_their_own_progress(supervisor):
    with httpx2.Client(transport=httpx2.HTTPTransport(uds=supervisor.socket), timeout=60) as h:
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
        with h.stream("POST", "http://localhost/mcp", json=init, headers=headers) as r:
            sid = r.headers["mcp-session-id"]
            body = r.read().decode()
        assert '"serverInfo"' in body and body.startswith("event: message\ndata: ")
        headers["Mcp-Session-Id"] = sid
        assert h.post("http://localhost/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                      headers=headers).status_code == 202
        assert h.get("http://localhost/mcp", headers=headers).status_code == 405
        r = h.post("http://localhost/mcp", headers=headers, json={"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                   "params": {"name": "create_session", "arguments": {}}})
        session = json_of_last_event(r.text)["result"]["structuredContent"]["id"]
        r = h.post("http://localhost/mcp", headers=headers, json={
            "jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "exec", "arguments": {"session": session, "command": "printf 'é%.0s' $(seq 1 20000)"},
                       "_meta": {"progressToken": "tok"}}})
        events = [e for e in r.text.split("\n\n") if e.strip()]
        progress = [json_of_event(e) for e in events[:-1]]
        assert progress and all(p["method"] == "notifications/progress" and p["params"]["progressToken"] == "tok" for p in progress)
        # Split only at character boundaries: the pieces join to the output.
        assert "".join(p["params"]["message"] for p in progress) == "é" * 20000
        assert json_of_event(events[-1])["result"]["structuredContent"]["exit_status"] == 0
        h.post("http://localhost/mcp", headers=headers, json={"jsonrpc": "2.0", "id": 4, "method": "tools/call",
               "params": {"name": "close_session", "arguments": {"session": session}}})
        assert h.delete("http://localhost/mcp", headers=headers).status_code == 200
        assert h.post("http://localhost/mcp", headers=headers, json={"jsonrpc": "2.0", "id": 5, "method": "tools/list"}).status_code == 404


def json_of_event(event: str) -> dict:
    import json
    return json.loads("".join(line[6:] for line in event.split("\n") if line.startswith("data: ")))


def json_of_last_event(text: str) -> dict:
    return json_of_event([e for e in text.split("\n\n") if e.strip()][-1])
