"""The OpenAI Agents SDK sandbox (levain.openai_agents), exercised through
the SDK itself (openai-agents from PyPI): its session contract, persist and
hydrate, resume, and a real SandboxAgent run driven by the scripted provider."""

from __future__ import annotations

import asyncio
import io
import tarfile

import httpx2
import pytest

pytest.importorskip("agents.sandbox")

from agents import OpenAIChatCompletionsModel, RunConfig, Runner, set_tracing_disabled  # noqa: E402
from agents.sandbox import Manifest, SandboxAgent, SandboxRunConfig  # noqa: E402
from agents.sandbox.capabilities import Shell  # noqa: E402
from agents.sandbox.errors import ExecTimeoutError, WorkspaceReadNotFoundError  # noqa: E402
from agents.sandbox.snapshot import NoopSnapshotSpec  # noqa: E402
from openai import AsyncOpenAI  # noqa: E402

import levain  # noqa: E402
from levain.openai_agents import LevainSandboxClient, LevainSandboxClientOptions  # noqa: E402

set_tracing_disabled(True)


def test_the_session_contract(supervisor):
    async def main():
        client = LevainSandboxClient(f"unix:{supervisor.socket}")
        session = await client.create(options=LevainSandboxClientOptions(labels={"via": "agents-sdk"}))
        levain_id = session.state.levain_session
        try:
            await session.start()
            r = await session.exec("echo", "a b", "$HOME")  # the SDK wraps it in sh -lc
            assert (r.stdout, r.exit_code) == (b"a b $HOME\n", 0)
            assert (await session.exec("pwd")).stdout == b"/workspace\n"
            r = await session.exec("echo oops >&2; exit 3")
            assert (r.stderr, r.exit_code) == (b"oops\n", 3)
            with pytest.raises(ExecTimeoutError):
                await session.exec("sleep 30", timeout=1)
            await session.write("notes/a.txt", io.BytesIO("ünï\n".encode()))
            assert (await session.read("notes/a.txt")).read() == "ünï\n".encode()
            assert (await session.read("/workspace/notes/a.txt")).read() == "ünï\n".encode()
            with pytest.raises(WorkspaceReadNotFoundError):
                await session.read("notes/missing.txt")
            assert await session.running()
            archive = (await session.persist_workspace()).read()
            names = tarfile.open(fileobj=io.BytesIO(archive)).getnames()
            assert "./notes/a.txt" in names and not any(n.startswith("/") or "workspace" in n for n in names)

            other = await client.create()
            try:
                await other.start()
                await other.hydrate_workspace(io.BytesIO(archive))
                assert (await other.exec("cat notes/a.txt")).stdout == "ünï\n".encode()
            finally:
                await other.shutdown()
                await client.delete(other)

            # Resume from the serialized state: the same Levain session, its files kept.
            payload = client.serialize_session_state(session.state)
            resumed = await client.resume(client.deserialize_session_state(payload))
            assert resumed.state.levain_session == levain_id
            assert (await resumed.read("notes/a.txt")).read() == "ünï\n".encode()
        finally:
            await session.shutdown()
            await client.delete(session)
        info = await levain.AsyncClient(f"unix:{supervisor.socket}").get_session(levain_id)
        assert info.status == "closed" and info.labels == {"via": "agents-sdk"}
        await client.aclose()

    asyncio.run(main())


def test_interactive_processes_through_the_sdk(supervisor):
    """The SDK's PTY contract (exec_command with tty, write_stdin): a
    process on a terminal of the jail answers typed input, keeps its id while
    it runs, and gives its exit code once done; without tty, one-shot."""
    async def main():
        client = LevainSandboxClient(f"unix:{supervisor.socket}")
        session = await client.create()
        try:
            await session.start()
            assert session.supports_pty()
            first = await session.pty_exec_start("python3 -q -i", tty=True, yield_time_s=1.5)
            assert first.process_id is not None and first.exit_code is None
            assert b">>>" in first.output
            update = await session.pty_write_stdin(session_id=first.process_id, chars="print(6 * 7)\n", yield_time_s=1.5)
            assert b"42" in update.output and update.exit_code is None
            update = await session.pty_write_stdin(session_id=first.process_id, chars="import os, sys; print(os.isatty(0), sys.stdout.isatty())\n",
                                                   yield_time_s=1.5)
            assert b"True True" in update.output
            done = await session.pty_write_stdin(session_id=first.process_id, chars="exit(4)\n", yield_time_s=5)
            assert done.process_id is None and done.exit_code == 4
            # No terminal: one command to its end, stdout and stderr together.
            plain = await session.pty_exec_start("echo out; echo err >&2; exit 2", yield_time_s=5)
            assert plain.process_id is None and plain.exit_code == 2
            assert b"out" in plain.output and b"err" in plain.output
            with pytest.raises(RuntimeError):
                slow = await session.pty_exec_start("sleep 30", yield_time_s=0.3)
                assert slow.process_id is not None
                await session.pty_write_stdin(session_id=slow.process_id, chars="x")
            # Ending them all ends their runs.
            long = await session.pty_exec_start("sleep 60", tty=True, yield_time_s=0.3)
            assert long.process_id is not None
            await session.pty_terminate_all()
            runs = await levain.AsyncClient(f"unix:{supervisor.socket}").list_runs(session=session.state.levain_session)
            assert not [r for r in runs if r.status in ("queued", "starting", "running")]
        finally:
            await session.shutdown()
            await client.delete(session)
            await client.aclose()

    asyncio.run(main())


def test_an_existing_session_is_used_and_left_open(client, session, supervisor):
    async def main():
        sdk = LevainSandboxClient(f"unix:{supervisor.socket}")
        s = await sdk.create(options=LevainSandboxClientOptions(session_id=session.id))
        await s.start()
        assert (await s.exec("echo shared")).stdout == b"shared\n"
        await s.shutdown()
        await sdk.delete(s)
        await sdk.aclose()

    asyncio.run(main())
    assert client.get_session(session.id).status == "open"
    with pytest.raises(ValueError, match="/workspace"):
        asyncio.run(LevainSandboxClient(f"unix:{supervisor.socket}").create(manifest=Manifest(root="/home/user")))


@pytest.mark.parametrize("snapshot", ["none", "local"])
def test_a_sandbox_agent_runs_commands_in_the_jail_and_answers(supervisor, provider_url, snapshot, tmp_path, monkeypatch):
    # "local": the SDK's default, which persists the workspace (a tar made in
    # the jail) to a file under XDG_STATE_HOME at the end of the run.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    label = f"coder-{snapshot}"
    script = {"replies": [
        {"tool_calls": [{"name": "exec_command", "arguments": {"cmd": "printf 'levain ran this\\n' > report.txt"}}]},
        {"tool_calls": [{"name": "exec_command", "arguments": {"cmd": "wc -c report.txt"}}]},
        {"text": "The report has 16 bytes."},
    ]}
    httpx2.post(provider_url + "/_script", json=script).raise_for_status()

    async def main():
        model = OpenAIChatCompletionsModel(model="gpt-4o-mini",
                                           openai_client=AsyncOpenAI(base_url=provider_url + "/v1", api_key="scripted"))
        agent = SandboxAgent(name="coder", instructions="Be brief.", model=model,
                             default_manifest=Manifest(root="/workspace"), capabilities=[Shell()])
        sdk = LevainSandboxClient(f"unix:{supervisor.socket}")
        result = await Runner.run(agent, "write the report and count its bytes", run_config=RunConfig(
            sandbox=SandboxRunConfig(client=sdk, options=LevainSandboxClientOptions(labels={"agent": label}),
                                     **({"snapshot": NoopSnapshotSpec()} if snapshot == "none" else {}))))
        await sdk.aclose()
        return result

    result = asyncio.run(main())
    assert result.final_output == "The report has 16 bytes."
    requests = httpx2.get(provider_url + "/_requests").json()
    calls = [r for r in requests if r["path"] == "/v1/chat/completions"]
    assert len(calls) == 3
    tool_results = [m.get("content") for m in calls[-1]["body"]["messages"] if m.get("role") == "tool"]
    assert any("16 report.txt" in str(t) for t in tool_results), tool_results
    # The session the SDK made (closed at the end) ran both commands; its log has them.
    c = levain.Client(f"unix:{supervisor.socket}")
    made = [s for s in c.list_sessions() if s.labels == {"agent": label}]
    assert len(made) == 1 and made[0].status == "closed"
    argvs = [e.payload.get("argv") for e in c.log_events(session=made[0].id) if e.type == "run.started"]
    assert any(a and "wc -c report.txt" in a[-1] for a in argvs), argvs
    if snapshot == "local":
        tars = list((tmp_path / "state").rglob("*.tar"))
        assert len(tars) == 1, tars
        assert tarfile.open(tars[0]).extractfile("./report.txt").read() == b"levain ran this\n"
