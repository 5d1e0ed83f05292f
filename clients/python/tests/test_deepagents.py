"""The deepagents backend, exercised through deepagents itself (from PyPI):
its protocol calls, the file tools BaseSandbox builds on `execute`, a real
`create_deep_agent` driven by the scripted provider, and the deepagents-code
provider interface."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx2
import pytest

pytest.importorskip("deepagents")

from deepagents.backends.protocol import SandboxBackendProtocol  # noqa: E402

import levain  # noqa: E402
from levain.deepagents import LevainProvider, LevainSandbox  # noqa: E402

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture()
def sandbox(session):
    return LevainSandbox(session)


def test_it_is_a_deepagents_sandbox_backend(sandbox, session):
    assert isinstance(sandbox, SandboxBackendProtocol)
    assert sandbox.id == session.id


def test_the_jail_has_what_framework_helpers_call(sandbox):
    r = sandbox.execute("for c in python python3 sh tar grep sed awk find xargs head wc; do command -v $c >/dev/null || echo missing $c; done; "
                        "python -c 'import sys; print(sys.version_info[0])'; echo x > /tmp/t && tar -C /tmp -cf - t | tar -tf -")
    assert r.output == "3\nt\n", r.output


def test_execute_output_exit_codes_stderr_and_timeouts(sandbox):
    r = sandbox.execute("echo hello; pwd")
    assert (r.output, r.exit_code, r.truncated) == ("hello\n/workspace\n", 0, False)
    r = sandbox.execute("echo out; echo oops >&2; exit 3")
    assert r.exit_code == 3
    assert r.output == "out\n\n[stderr] oops\n\nExit code: 3"
    assert sandbox.execute("true").output == "<no output>"
    r = sandbox.execute("echo started; sleep 30", timeout=1)
    assert r.exit_code == 124 and "timed out after 1 seconds" in r.output and "started" in r.output
    assert sandbox.execute("echo fine", timeout=5).exit_code == 0  # control


def test_large_output_is_cut_where_asked_and_arrives_whole_when_allowed(session):
    cut = LevainSandbox(session).execute("head -c 1048576 /dev/zero | tr '\\0' a")
    assert cut.truncated and cut.output.startswith("a" * 1000) and "Output truncated at 100000 bytes" in cut.output
    whole = LevainSandbox(session, max_output_bytes=2_000_000).execute("head -c 1048576 /dev/zero | tr '\\0' a")
    assert not whole.truncated and whole.output == "a" * 1048576


def test_uploads_and_downloads_report_each_file_with_deepagents_error_names(sandbox, session):
    session.exec("mkdir -p /workspace/taken/dir /workspace/closed && chmod 000 /workspace/closed && "
                 "echo secret > /workspace/locked && chmod 000 /workspace/locked", check=True)
    binary = bytes(range(256))
    ups = sandbox.upload_files([
        ("/workspace/a.bin", binary),
        ("/workspace/taken/dir", b"a directory is in the way"),
        ("/workspace/closed/x.txt", b"cannot enter"),
        ("/workspace/ünï/b.txt", "ünïcödé ✓".encode()),
        ("/workspace/../etc/passwd", b"no"),
        ("/tmp/scratch.txt", b"tmp is the jail's"),
    ])
    assert [(u.path, u.error) for u in ups] == [
        ("/workspace/a.bin", None),
        ("/workspace/taken/dir", "is_directory"),
        ("/workspace/closed/x.txt", "permission_denied"),
        ("/workspace/ünï/b.txt", None),
        ("/workspace/../etc/passwd", "invalid_path"),
        ("/tmp/scratch.txt", None),
    ]
    downs = sandbox.download_files(["/workspace/a.bin", "/workspace/missing", "/workspace/taken", "/workspace/locked",
                                    "/workspace/ünï/b.txt", "/tmp/scratch.txt"])
    assert [d.error for d in downs] == [None, "file_not_found", "is_directory", "permission_denied", None, None]
    assert downs[0].content == binary and downs[4].content == "ünïcödé ✓".encode()
    assert downs[5].content == b"tmp is the jail's"
    assert sandbox.execute("cat /tmp/scratch.txt").output == "tmp is the jail's"


def test_the_file_tools_basesandbox_builds_on_execute(sandbox):
    # BaseSandbox's ls/read/write/edit/grep/glob run python3 in the jail.
    assert sandbox.write("/workspace/src/app.py", "def main():\n    return 41\n").error is None
    assert "41" in sandbox.read("/workspace/src/app.py").file_data["content"]
    edited = sandbox.edit("/workspace/src/app.py", "return 41", "return 42")
    assert edited.error is None and edited.occurrences == 1
    big_old = "x = 1\n" * 2000
    sandbox.write("/workspace/src/big.py", big_old)
    assert sandbox.edit("/workspace/src/big.py", big_old, "x = 2\n").error is None  # through /tmp uploads
    assert sandbox.execute("cat /workspace/src/big.py").output == "x = 2\n"
    assert sorted(e["path"] for e in sandbox.ls("/workspace/src").entries) == ["/workspace/src/app.py", "/workspace/src/big.py"]
    matches = sandbox.grep("return 42", path="/workspace").matches
    assert [(m["path"], m["line"]) for m in matches] == [("/workspace/src/app.py", 2)]
    assert sorted(m["path"] for m in sandbox.glob("**/*.py", path="/workspace").matches) == [
        "/workspace/src/app.py", "/workspace/src/big.py"]
    assert sandbox.execute("python3 -c 'import sys; sys.path.insert(0, \"src\"); import app; print(app.main())'").output == "42\n"


def test_five_commands_in_parallel_through_the_async_interface(sandbox):
    async def main():
        return await asyncio.gather(*(sandbox.aexecute(f"sleep 0.3; echo {i}") for i in range(5)))

    results = asyncio.run(main())
    assert [r.output for r in results] == [f"{i}\n" for i in range(5)]


def test_a_deep_agent_writes_a_file_runs_a_command_and_answers(session, provider_url):
    from deepagents import create_deep_agent
    from langchain_openai import ChatOpenAI

    script = {"replies": [
        {"tool_calls": [{"name": "write_file", "arguments": {
            "file_path": "/workspace/report.txt", "content": "levain ran this\n"}}]},
        {"tool_calls": [{"name": "execute", "arguments": {"command": "wc -c /workspace/report.txt"}}]},
        {"text": "The report has 16 bytes."},
    ]}
    httpx2.post(provider_url + "/_script", json=script).raise_for_status()
    model = ChatOpenAI(model="gpt-4o-mini", base_url=provider_url + "/v1", api_key="scripted", max_retries=0)
    agent = create_deep_agent(model=model, backend=LevainSandbox(session))
    result = agent.invoke({"messages": [{"role": "user", "content": "write the report and count its bytes"}]})

    assert result["messages"][-1].content == "The report has 16 bytes."
    tool_outputs = [m.content for m in result["messages"] if m.type == "tool"]
    assert any("16 /workspace/report.txt" in str(t) for t in tool_outputs), tool_outputs
    assert session.files.read_text("report.txt") == "levain ran this\n"
    # The session log has every step the agent took in the jail.
    events = list(session.events())
    written = [e for e in events if e.type == "file.written"]
    assert [e.payload["path"] for e in written] == ["report.txt"]
    argvs = [e.payload.get("argv") for e in events if e.type == "run.started"]
    assert any(a and "wc -c /workspace/report.txt" in a[-1] for a in argvs), argvs
    # The model saw the tool results: the scripted provider got three calls.
    requests = httpx2.get(provider_url + "/_requests").json()
    assert len([r for r in requests if r["path"] == "/v1/chat/completions"]) == 3


def test_the_deepagents_code_provider(supervisor, monkeypatch):
    monkeypatch.setenv("LEVAIN_CONNECT", f"unix:{supervisor.socket}")
    provider = LevainProvider()
    created = provider.get_or_create(labels={"via": "provider"})
    try:
        assert created.execute("echo from-provider").output == "from-provider\n"
        again = provider.get_or_create(sandbox_id=created.id)
        assert again.id == created.id and again.execute("echo same").output == "same\n"
        assert levain.Client(f"unix:{supervisor.socket}").get_session(created.id).labels == {"via": "provider"}
    finally:
        provider.delete(sandbox_id=created.id)
    assert levain.Client(f"unix:{supervisor.socket}").get_session(created.id).status == "closed"
    from levain.deepagents import SandboxNotFoundError
    with pytest.raises(SandboxNotFoundError):
        provider.get_or_create(sandbox_id=created.id)  # closed
    with pytest.raises(SandboxNotFoundError):
        provider.get_or_create(sandbox_id="s-000000000000")


def test_the_entry_point_is_declared():
    text = (REPO / "clients" / "python" / "pyproject.toml").read_text()
    assert '[project.entry-points."deepagents_code.sandbox_providers"]' in text
    assert 'levain = "levain.deepagents:LevainProvider"' in text
