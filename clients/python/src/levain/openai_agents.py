"""Levain as a sandbox of the OpenAI Agents SDK (`openai-agents`, agents.sandbox).

    from agents import Runner, RunConfig
    from agents.sandbox import SandboxAgent, SandboxRunConfig
    from levain.openai_agents import LevainSandboxClient, LevainSandboxClientOptions

    agent = SandboxAgent(name="coder", instructions="...", model=...)
    result = await Runner.run(agent, "task", run_config=RunConfig(sandbox=SandboxRunConfig(
        client=LevainSandboxClient(), options=LevainSandboxClientOptions(policy="default"))))

Each SDK sandbox session is a Levain session (a jail with its own
workspace, the policy's limits, everything in the session log). Commands
run as the jail's one user (the SDK's `user` argument is not a second user
here), in the manifest's root, which must be /workspace or a directory in
it (the rest of a jail's root is read-only). The workspace is persisted and
hydrated as a tar archive made and unpacked inside the jail. No PTY.
"""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from collections import deque
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from agents.sandbox.errors import (
    ExecTimeoutError,
    ExecTransportError,
    WorkspaceArchiveReadError,
    WorkspaceArchiveWriteError,
    WorkspaceReadNotFoundError,
    WorkspaceWriteTypeError,
)
from agents.sandbox.manifest import Manifest
from agents.sandbox.session import SandboxSession, SandboxSessionState
from agents.sandbox.session.base_sandbox_session import BaseSandboxSession
from agents.sandbox.session.pty_output import collect_pty_output
from agents.sandbox.session.pty_types import (
    PTY_PROCESSES_MAX,
    PtyExecUpdate,
    allocate_pty_process_id,
    clamp_pty_yield_time_ms,
    process_id_to_prune_from_meta,
    resolve_pty_write_yield_time_ms,
)
from agents.sandbox.session.sandbox_client import BaseSandboxClient, BaseSandboxClientOptions
from agents.sandbox.snapshot import SnapshotBase, SnapshotSpec, resolve_snapshot
from agents.sandbox.types import ExecResult, User

from .aio import AsyncClient, AsyncRun, AsyncSession
from .errors import LevainError, NotFound

WORKSPACE = "/workspace"


class LevainSandboxClientOptions(BaseSandboxClientOptions):
    """How the SDK's sandbox sessions are made: a new Levain session with
    these settings, or (``session_id``) an existing open one, used as is and
    not closed at the end."""

    type: Literal["levain"] = "levain"
    connect: str | None = None
    policy: str | None = None
    tenant: str | None = None
    labels: dict[str, str] | None = None
    memory: int | str | None = None
    cpus: float | None = None
    pids: int | None = None
    session_id: str | None = None


class LevainSandboxSessionState(SandboxSessionState):
    """What the SDK keeps to resume: the Levain session and whether it is ours to close."""

    type: Literal["levain"] = "levain"
    levain_session: str
    connect: str | None = None
    owned: bool = True


def _root_of(manifest: Manifest) -> str:
    root = str(manifest.root)
    if root != WORKSPACE and not root.startswith(WORKSPACE + "/"):
        raise ValueError(f"manifest root {root}: a Levain jail's writable workspace is {WORKSPACE}; "
                         f"use {WORKSPACE} or a directory in it (Manifest(root=\"{WORKSPACE}\"))")
    return root


@dataclass
class _PtyProcess:
    """A process started by pty_exec_start: its Levain run, and its output
    as the SDK's collector reads it (chunks, a lock, an event)."""
    run: AsyncRun
    tty: bool
    chunks: deque[bytes] = field(default_factory=deque)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    notify: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    exit_code: int | None = None
    last_used: float = field(default_factory=time.monotonic)


class LevainSandboxSession(BaseSandboxSession):
    state: LevainSandboxSessionState

    def __init__(self, *, state: LevainSandboxSessionState, client: AsyncClient) -> None:
        self.state = state
        self._client = client
        self._session: AsyncSession = client.session(state.levain_session)
        self._closed = False
        self._pty: dict[int, _PtyProcess] = {}
        self._pty_lock = asyncio.Lock()

    @property
    def levain_session(self) -> AsyncSession:
        return self._session

    async def _prepare_backend_workspace(self) -> None:
        root = _root_of(self.state.manifest)
        if root != WORKSPACE:
            try:
                await self._session.files.mkdir(root, parents=True)
            except LevainError as e:
                raise WorkspaceArchiveWriteError(path=Path(root), cause=e) from e

    async def _exec_internal(self, *command: str | Path, timeout: float | None = None) -> ExecResult:
        argv = [str(c) for c in command]
        try:
            env = await self.state.manifest.environment.resolve()
        except Exception:  # noqa: BLE001 - an environment that does not resolve is the SDK's to report
            env = {}
        try:
            r = await self._session.exec(argv, cwd=_root_of(self.state.manifest), env=env or None,
                                         timeout=timeout if timeout and timeout > 0 else None)
        except LevainError as e:
            raise ExecTransportError(command=command, cause=e) from e
        if r.status == "timed_out":
            raise ExecTimeoutError(command=command, timeout_s=timeout, cause=TimeoutError(f"run {r.run_id} timed out"))
        if r.status == "error":
            raise ExecTransportError(command=command, cause=LevainError(f"run {r.run_id}: {r.error}"))
        return ExecResult(stdout=r.stdout_bytes, stderr=r.stderr_bytes,
                          exit_code=r.exit_status if r.exit_status is not None else 125)

    # -- interactive processes (the SDK's exec_command with tty, write_stdin)

    def supports_pty(self) -> bool:
        return True

    async def pty_exec_start(self, *command: str | Path, timeout: float | None = None, shell: bool | list[str] = True,
                             user: str | User | None = None, tty: bool = False, yield_time_s: float | None = None,
                             max_output_tokens: int | None = None) -> PtyExecUpdate:
        """Starts a Levain run (on a pseudo-terminal of the jail with
        ``tty``, its stdin kept open) and returns what it wrote within the
        yield time; a process still running keeps its id for write_stdin."""
        argv = [str(c) for c in self._prepare_exec_command(*command, shell=shell, user=user)]
        try:
            env = await self.state.manifest.environment.resolve()
        except Exception:  # noqa: BLE001
            env = {}
        try:
            run = await self._session.start(argv, cwd=_root_of(self.state.manifest), env=env or None,
                                            timeout=timeout if timeout and timeout > 0 else None,
                                            pty=True if tty else None, stdin_stream=tty)
        except LevainError as e:
            raise ExecTransportError(command=command, cause=e) from e
        process = _PtyProcess(run=run, tty=tty)
        pumps = [asyncio.create_task(self._pump(process, "stdout"))]
        if not tty:
            pumps.append(asyncio.create_task(self._pump(process, "stderr")))
        process.tasks = pumps + [asyncio.create_task(self._watch(process, pumps))]
        pruned: _PtyProcess | None = None
        async with self._pty_lock:
            process_id = allocate_pty_process_id(set(self._pty))
            if len(self._pty) >= PTY_PROCESSES_MAX:
                victim = process_id_to_prune_from_meta(
                    [(i, p.last_used, p.closed.is_set()) for i, p in self._pty.items()])
                if victim is not None:
                    pruned = self._pty.pop(victim)
            self._pty[process_id] = process
        if pruned is not None:
            await self._terminate(pruned)
        yield_ms = 10_000 if yield_time_s is None else int(yield_time_s * 1000)
        return await self._pty_update(process_id, process, clamp_pty_yield_time_ms(yield_ms), max_output_tokens)

    async def pty_write_stdin(self, *, session_id: int, chars: str, yield_time_s: float | None = None,
                              max_output_tokens: int | None = None) -> PtyExecUpdate:
        async with self._pty_lock:
            process = self._resolve_pty_session_entry(pty_processes=self._pty, session_id=session_id)
        if chars:
            if not process.tty:
                raise RuntimeError("stdin is not available for this process")
            with suppress(LevainError, ValueError):  # the process is gone: what it wrote is still read
                await process.run.send_stdin(chars)
            await asyncio.sleep(0.1)
        yield_ms = 250 if yield_time_s is None else int(yield_time_s * 1000)
        process.last_used = time.monotonic()
        return await self._pty_update(
            session_id, process, resolve_pty_write_yield_time_ms(yield_time_ms=yield_ms, input_empty=chars == ""),
            max_output_tokens)

    async def pty_terminate_all(self) -> None:
        async with self._pty_lock:
            processes = list(self._pty.values())
            self._pty.clear()
        for process in processes:
            await self._terminate(process)

    async def _pump(self, process: _PtyProcess, stream: str) -> None:
        with suppress(LevainError):
            async for chunk in process.run.iter_output(stream, follow=True):
                async with process.lock:
                    process.chunks.append(chunk)
                process.notify.set()

    async def _watch(self, process: _PtyProcess, pumps: list[asyncio.Task[None]]) -> None:
        try:
            info = await process.run.wait()
            process.exit_code = info.exit_status if info.exit_status is not None else 125
        except LevainError:
            process.exit_code = 125
        await asyncio.gather(*pumps, return_exceptions=True)
        process.closed.set()
        process.notify.set()

    async def _pty_update(self, process_id: int, process: _PtyProcess, yield_ms: int,
                          max_output_tokens: int | None) -> PtyExecUpdate:
        output, original_token_count, closed = await collect_pty_output(
            output_chunks=process.chunks, output_lock=process.lock, output_notify=process.notify,
            is_done=process.closed.is_set, yield_time_ms=yield_ms, max_output_tokens=max_output_tokens)
        if not closed:
            return PtyExecUpdate(process_id=process_id, output=output, exit_code=None,
                                 original_token_count=original_token_count)
        async with self._pty_lock:
            self._pty.pop(process_id, None)
        await self._terminate(process)
        return PtyExecUpdate(process_id=None, output=output, exit_code=process.exit_code,
                             original_token_count=original_token_count)

    async def _terminate(self, process: _PtyProcess) -> None:
        """Ends the run (its whole cgroup) and what reads it."""
        if not process.closed.is_set():
            with suppress(LevainError):
                await process.run.cancel()
        if process.tty and getattr(process.run, "_stdin_task", None) is not None:
            with suppress(Exception):  # the stdin upload ends with the run
                await asyncio.wait_for(process.run.close_stdin(), timeout=5)
        for task in process.tasks:
            task.cancel()
        await asyncio.gather(*process.tasks, return_exceptions=True)

    async def read(self, path: Path, *, user: str | User | None = None) -> io.IOBase:
        p = self.normalize_path(path)
        try:
            return io.BytesIO(await self._session.files.read(p.as_posix()))
        except NotFound as e:
            raise WorkspaceReadNotFoundError(path=p, cause=e) from e
        except LevainError as e:
            raise WorkspaceArchiveReadError(path=p, cause=e) from e

    async def write(self, path: Path, data: io.IOBase, *, user: str | User | None = None) -> None:
        p = self.normalize_path(path, for_write=True)
        payload = data.read()
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        if not isinstance(payload, (bytes, bytearray)):
            raise WorkspaceWriteTypeError(path=p, actual_type=type(payload).__name__)
        try:
            await self._session.files.write(p.as_posix(), bytes(payload))
        except LevainError as e:
            raise WorkspaceArchiveWriteError(path=p, cause=e) from e

    async def running(self) -> bool:
        try:
            return (await self._session.info()).status != "closed"
        except LevainError:
            return False

    async def persist_workspace(self) -> io.IOBase:
        root = _root_of(self.state.manifest)
        skip = [p.as_posix() for p in self._persist_workspace_skip_relpaths()]
        try:
            return io.BytesIO(await self._session.export_workspace(root, exclude=skip))
        except LevainError as e:
            raise WorkspaceArchiveReadError(path=Path(root), cause=e) from e

    async def hydrate_workspace(self, data: io.IOBase) -> None:
        root = _root_of(self.state.manifest)
        payload = data.read()
        try:
            await self._session.import_workspace(payload.encode() if isinstance(payload, str) else bytes(payload), root)
        except LevainError as e:
            raise WorkspaceArchiveWriteError(path=Path(root), cause=e) from e

    async def _shutdown_backend(self) -> None:
        await self.pty_terminate_all()
        await self.close_if_owned()

    async def close_if_owned(self) -> None:
        """Closes the Levain session if this sandbox made it, once (the SDK
        shuts a session down and then deletes it)."""
        if self.state.owned and not self._closed:
            self._closed = True
            try:
                await self._session.close()
            except LevainError:
                pass


class LevainSandboxClient(BaseSandboxClient[LevainSandboxClientOptions]):
    """Makes the SDK's sandbox sessions Levain sessions (``connect``:
    ``unix:PATH`` or ``tcp:HOST:PORT``; default ``LEVAIN_CONNECT``, else the
    default socket)."""

    backend_id = "levain"
    supports_default_options = True

    def __init__(self, connect: str | None = None, *, token: str | None = None) -> None:
        self.connect = connect
        self.token = token
        self._clients: dict[str | None, AsyncClient] = {}

    def _client(self, connect: str | None) -> AsyncClient:
        key = connect or self.connect
        if key not in self._clients:
            self._clients[key] = AsyncClient(key, token=self.token)
        return self._clients[key]

    async def create(self, *, snapshot: SnapshotSpec | SnapshotBase | None = None, manifest: Manifest | None = None,
                     options: LevainSandboxClientOptions | None = None) -> SandboxSession:
        options = options or LevainSandboxClientOptions()
        manifest = manifest or Manifest(root=WORKSPACE)
        _root_of(manifest)
        self._validate_manifest_for_create(manifest)
        client = self._client(options.connect)
        if options.session_id is not None:
            levain_session, owned = options.session_id, False
            await client.get_session(levain_session)  # NotFound: a clear error now, not at the first exec
        else:
            made = await client.create_session(policy=options.policy, tenant=options.tenant, labels=options.labels,
                                               memory=options.memory, cpus=options.cpus, pids=options.pids)
            levain_session, owned = made.id, True
        session_id = uuid.uuid4()
        state = LevainSandboxSessionState(session_id=session_id, manifest=manifest,
                                          snapshot=resolve_snapshot(snapshot, str(session_id)),
                                          levain_session=levain_session, connect=options.connect or self.connect,
                                          owned=owned)
        return self._wrap_session(LevainSandboxSession(state=state, client=client))

    async def delete(self, session: SandboxSession) -> SandboxSession:
        inner = session._inner
        if isinstance(inner, LevainSandboxSession):
            await inner.close_if_owned()
        return session

    async def resume(self, state: SandboxSessionState) -> SandboxSession:
        if not isinstance(state, LevainSandboxSessionState):
            raise TypeError(f"not a Levain sandbox state: {type(state).__name__}")
        client = self._client(state.connect)
        reconnected = False
        try:
            info = await client.get_session(state.levain_session)
            reconnected = info.status != "closed"
        except NotFound:
            pass
        if not reconnected:
            made = await client.create_session()
            state.levain_session, state.owned = made.id, True
            state.workspace_root_ready = False
        inner = LevainSandboxSession(state=state, client=client)
        inner._set_start_state_preserved(reconnected, system=reconnected)
        return self._wrap_session(inner)

    def deserialize_session_state(self, payload: dict[str, object]) -> SandboxSessionState:
        return self._deserialize_session_state_payload(payload, LevainSandboxSessionState)

    async def aclose(self) -> None:
        for c in self._clients.values():
            await c.aclose()
        self._clients.clear()


__all__ = ["LevainSandboxClient", "LevainSandboxClientOptions", "LevainSandboxSession", "LevainSandboxSessionState"]
