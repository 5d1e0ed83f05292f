"""The asyncio client: the API of :mod:`levain.client`, awaited."""

from __future__ import annotations

import asyncio
from typing import IO, Any, AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence, Union

import httpx2

from . import _core
from ._core import Address
from .errors import APIError, ConnectionFailed, NotFound
from .models import Event, ExecResult, FileInfo, FileResult, RunInfo, SessionInfo

OutputCallback = Callable[[bytes], Union[None, Awaitable[None]]]


async def _empty() -> bytes:
    return b""


async def _value(data: bytes) -> bytes:
    return data


class AsyncClient:
    """A connection to ``levain serve`` for asyncio; see :class:`levain.Client`."""

    def __init__(self, connect: "str | Address | None" = None, *, token: str | None = None,
                 timeout: float = 60.0) -> None:
        self.address = Address.resolve(connect)
        transport = (httpx2.AsyncHTTPTransport(uds=self.address.unix) if self.address.unix is not None
                     else httpx2.AsyncHTTPTransport())
        self._http = httpx2.AsyncClient(base_url=self.address.base_url, transport=transport,
                                        headers=_core.headers(token, self.address), timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _request(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
                       content: Any = None, timeout: Any = httpx2.USE_CLIENT_DEFAULT) -> Any:
        try:
            r = await self._http.request(method, _core.with_query(path, params), json=json, content=content, timeout=timeout)
        except httpx2.TransportError as e:
            raise ConnectionFailed(f"levain at {self.address}: {e}") from e
        return _core.check(r.status_code, r.content)

    async def _stream_lines(self, path: str, params: Mapping[str, Any]) -> AsyncIterator[str]:
        try:
            async with self._http.stream("GET", _core.with_query(path, params), timeout=None) as r:
                if r.status_code >= 400:
                    _core.check(r.status_code, await r.aread())
                async for line in r.aiter_lines():
                    yield line
        except httpx2.TransportError as e:
            raise ConnectionFailed(f"levain at {self.address}: {e}") from e

    async def _stream_bytes(self, path: str, params: Mapping[str, Any]) -> AsyncIterator[bytes]:
        try:
            async with self._http.stream("GET", _core.with_query(path, params), timeout=None) as r:
                if r.status_code >= 400:
                    _core.check(r.status_code, await r.aread())
                async for chunk in r.aiter_bytes():
                    yield chunk
        except httpx2.TransportError as e:
            raise ConnectionFailed(f"levain at {self.address}: {e}") from e

    async def health(self) -> dict[str, Any]:
        return await self._request("GET", "/v1/health")

    async def version(self) -> dict[str, Any]:
        return await self._request("GET", "/v1/version")

    async def create_session(self, *, policy: str | None = None, tenant: str | None = None,
                             labels: Mapping[str, str] | None = None, memory: int | str | None = None,
                             cpus: float | None = None, pids: int | None = None, timeout: float | str | None = None,
                             binds_ro: Sequence[str] = (), binds_rw: Sequence[str] = ()) -> "AsyncSession":
        body = _core.session_body(policy=policy, tenant=tenant, labels=labels, memory=memory, cpus=cpus, pids=pids,
                                  timeout=timeout, binds_ro=binds_ro, binds_rw=binds_rw)
        info = SessionInfo.from_json(await self._request("POST", "/v1/sessions", json=body, timeout=None))
        return AsyncSession(self, info.id, info)

    def session(self, session_id: str) -> "AsyncSession":
        _core.segment(session_id, "session")
        return AsyncSession(self, session_id)

    async def get_session(self, session_id: str) -> SessionInfo:
        return SessionInfo.from_json(await self._request("GET", f"/v1/sessions/{_core.segment(session_id, 'session')}"))

    async def list_sessions(self, *, tenant: str | None = None, status: str | None = None) -> list[SessionInfo]:
        params = {k: v for k, v in (("tenant", tenant), ("status", status)) if v is not None}
        return [SessionInfo.from_json(o) for o in (await self._request("GET", "/v1/sessions", params=params))["sessions"]]

    def run(self, run_id: str) -> "AsyncRun":
        _core.segment(run_id, "run")
        return AsyncRun(self, run_id)

    async def get_run(self, run_id: str) -> RunInfo:
        return RunInfo.from_json(await self._request("GET", f"/v1/runs/{_core.segment(run_id, 'run')}"))

    async def list_runs(self, *, session: str | None = None, status: str | None = None) -> list[RunInfo]:
        params = {k: v for k, v in (("session", session), ("status", status)) if v is not None}
        return [RunInfo.from_json(o) for o in (await self._request("GET", "/v1/runs", params=params))["runs"]]

    async def approvals(self, session: str | None = None) -> list[dict[str, Any]]:
        params = {"session": session} if session else None
        return (await self._request("GET", "/v1/approvals", params=params))["approvals"]

    async def decide(self, call_id: str, *, allow: bool, reason: str, by: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"decision": "allow" if allow else "deny", "reason": reason}
        if by is not None:
            body["by"] = by
        return await self._request("POST", f"/v1/approvals/{_core.segment(call_id, 'call_id')}", json=body)

    async def usage(self, *, session: str | None = None, tenant: str | None = None, run: str | None = None,
                    by: str | None = None) -> dict[str, Any]:
        params = {k: v for k, v in (("session", session), ("tenant", tenant), ("run", run), ("by", by)) if v is not None}
        return await self._request("GET", "/v1/usage", params=params)

    async def log_events(self, *, session: str | None = None, run: str | None = None, after_seq: int | None = None,
                         after_id: int | None = None, limit: int | None = None) -> list[Event]:
        params = {k: v for k, v in (("session", session), ("run", run), ("after_seq", after_seq),
                                    ("after_id", after_id), ("limit", limit)) if v is not None}
        return [Event.from_json(o) for o in (await self._request("GET", "/v1/log/events", params=params))["events"]]

    async def verify_log(self, session: str | None = None) -> dict[str, Any]:
        return await self._request("GET", "/v1/log/verify", params={"session": session} if session else None)


class AsyncSession:
    """A session, for asyncio; see :class:`levain.Session`."""

    def __init__(self, client: AsyncClient, session_id: str, info: SessionInfo | None = None) -> None:
        self.client = client
        self.id = session_id
        self._path = f"/v1/sessions/{_core.segment(session_id, 'session')}"
        self.files = AsyncFiles(client, self._path)
        self.last_info = info

    def __repr__(self) -> str:
        return f"AsyncSession({self.id!r})"

    async def __aenter__(self) -> "AsyncSession":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def info(self) -> SessionInfo:
        self.last_info = SessionInfo.from_json(await self.client._request("GET", self._path))
        return self.last_info

    async def close(self) -> SessionInfo:
        return SessionInfo.from_json(await self.client._request("DELETE", self._path, timeout=None))

    async def reopen(self) -> SessionInfo:
        return SessionInfo.from_json(await self.client._request("POST", self._path + "/reopen", timeout=None))

    async def pause(self) -> SessionInfo:
        """Freezes every running process of the session (the cgroup freezer)
        until :meth:`resume`; files stay readable and writable; new runs are
        refused (409) meanwhile. Wall-clock timeouts keep counting."""
        return SessionInfo.from_json(await self.client._request("POST", self._path + "/pause"))

    async def resume(self) -> SessionInfo:
        """Thaws what :meth:`pause` froze."""
        return SessionInfo.from_json(await self.client._request("POST", self._path + "/resume"))

    async def start(self, command: str | Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None,
                    timeout: float | str | None = None, stdin: bytes | str | None = None, stdin_stream: bool = False,
                    cpu_time: float | str | None = None, file_size: int | str | None = None,
                    idempotency_key: str | None = None, retry: str | None = None,
              pty: bool | tuple[int, int] | None = None) -> "AsyncRun":
        body = _core.run_body(command, env=env, cwd=cwd, timeout=timeout, stdin=stdin, stdin_stream=stdin_stream,
                              cpu_time=cpu_time, file_size=file_size, idempotency_key=idempotency_key,
                              retry=retry, wait=False, pty=pty)
        info = RunInfo.from_json(await self.client._request("POST", self._path + "/runs", json=body))
        return AsyncRun(self.client, info.id, info)

    async def exec(self, command: str | Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None,
                   timeout: float | str | None = None, stdin: bytes | str | None = None,
                   on_stdout: OutputCallback | None = None, on_stderr: OutputCallback | None = None,
                   check: bool = False, pty: bool | tuple[int, int] | None = None) -> ExecResult:
        if on_stdout is None and on_stderr is None:
            body = _core.run_body(command, env=env, cwd=cwd, timeout=timeout, stdin=stdin, stdin_stream=False,
                                  cpu_time=None, file_size=None, idempotency_key=None, retry=None, wait=True, pty=pty)
            body["inline_output"] = _core.INLINE_OUTPUT
            info = RunInfo.from_json(await self.client._request("POST", self._path + "/runs", json=body, timeout=None))
            run = AsyncRun(self.client, info.id, info)
            out_in, err_in = _core.inlined(info, "stdout"), _core.inlined(info, "stderr")
            out, err = await asyncio.gather(
                _value(out_in) if out_in is not None else run.stdout() if info.stdout_bytes else _empty(),
                _value(err_in) if err_in is not None else run.stderr() if info.stderr_bytes else _empty())
            result = ExecResult.of(info, out, err)
        else:
            run = await self.start(command, env=env, cwd=cwd, timeout=timeout, stdin=stdin, pty=pty)
            result = await run.result(on_stdout=on_stdout, on_stderr=on_stderr)
        return result.check() if check else result

    async def agent_run(self, agent: str, input: str, *, agent_file: str | None = None, wait: bool = True) -> RunInfo:
        body: dict[str, Any] = {"agent": agent, "input": input, "wait": wait}
        if agent_file is not None:
            body["agent_file"] = agent_file
        return RunInfo.from_json(await self.client._request("POST", self._path + "/agent-runs", json=body, timeout=None))

    async def tools(self) -> list[dict[str, Any]]:
        return (await self.client._request("GET", self._path + "/tools"))["tools"]

    async def export_workspace(self, root: str = "/workspace", *, exclude: Sequence[str] = ()) -> bytes:
        parts = [c async for c in self.client._stream_bytes(self._path + "/archive" + _core.archive_query(root, exclude), {})]
        return b"".join(parts)

    async def import_workspace(self, archive: bytes | IO[bytes], root: str = "/workspace") -> int:
        body = _core.chunks_of(archive)
        if not isinstance(body, bytes):
            chunks = body

            async def stream() -> AsyncIterator[bytes]:
                # A file is read a chunk at a time; the read blocks the loop
                # as briefly as Files.write's.
                for chunk in chunks:
                    yield chunk
            body = stream()
        r = await self.client._request("PUT", self._path + "/archive" + _core.archive_query(root),
                                       content=body, timeout=None)
        return int(r["bytes"])

    async def events(self, *, after: int | None = None, follow: bool = False) -> AsyncIterator[Event]:
        params: dict[str, Any] = {"follow": "true" if follow else "false"}
        if after is not None:
            params["after"] = after
        parser = _core.SSEParser()
        async for line in self.client._stream_lines(self._path + "/events", params):
            event = parser.feed(line)
            if event is not None:
                yield Event.from_json(event)


class AsyncFiles:
    """A session's workspace, for asyncio; see :class:`levain.client.Files`."""

    def __init__(self, client: AsyncClient, session_path: str) -> None:
        self.client = client
        self._path = session_path

    async def read(self, path: str) -> bytes:
        return b"".join([c async for c in self.client._stream_bytes(self._path + "/file", {"path": _core.file_path(path)})])

    async def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return (await self.read(path)).decode(encoding)

    async def write(self, path: str, data: bytes | str | IO[bytes], *, mode: int | None = None) -> int:
        if isinstance(data, str):
            data = data.encode("utf-8")
        elif not isinstance(data, (bytes, bytearray, memoryview)):
            data = data.read()
        r = await self.client._request("PUT", _core.file_url(self._path + "/file", path, mode=mode), content=bytes(data),
                                 timeout=None)
        return int(r["size"])

    async def list(self, path: str = ".") -> list[FileInfo]:
        directory = _core.file_path(path)
        r = await self.client._request("GET", _core.file_url(self._path + "/files", directory))
        return [FileInfo.from_json(e, directory) for e in r["entries"]]

    async def stat(self, path: str) -> FileInfo:
        return FileInfo.from_json(await self.client._request("GET", _core.file_url(self._path + "/stat", path)))

    async def exists(self, path: str) -> bool:
        try:
            await self.stat(path)
            return True
        except NotFound:
            return False

    async def remove(self, path: str, *, recursive: bool = False) -> None:
        await self.client._request("DELETE", _core.file_url(self._path + "/file", path, recursive="true" if recursive else "false"))

    async def mkdir(self, path: str, *, parents: bool = False, mode: int | None = None) -> None:
        body: dict[str, Any] = {"path": _core.file_path(path), "parents": parents}
        if mode is not None:
            body["mode"] = mode
        await self.client._request("POST", self._path + "/mkdir", json=body)

    async def rename(self, path: str, to: str) -> None:
        await self.client._request("POST", self._path + "/rename",
                                   json={"path": _core.file_path(path), "to": _core.file_path(to, "to")})

    async def upload(self, files: Mapping[str, bytes | str] | Iterable[tuple[str, bytes | str]]) -> list[FileResult]:
        """Writes many files concurrently; a result per file, in order."""
        items = list(files.items()) if isinstance(files, Mapping) else list(files)

        async def one(path: str, data: bytes | str) -> FileResult:
            try:
                await self.write(path, data)
                return FileResult(path)
            except (APIError, ValueError, TypeError) as e:
                return FileResult(path, error=e)

        return list(await asyncio.gather(*(one(p, d) for p, d in items)))

    async def download(self, paths: Iterable[str]) -> list[FileResult]:
        """Reads many files concurrently; a result per file, in order."""

        async def one(path: str) -> FileResult:
            try:
                return FileResult(path, content=await self.read(path))
            except (APIError, ValueError, TypeError) as e:
                return FileResult(path, error=e)

        return list(await asyncio.gather(*(one(p) for p in paths)))


class AsyncRun:
    """A run, for asyncio; see :class:`levain.Run`."""

    def __init__(self, client: AsyncClient, run_id: str, info: RunInfo | None = None) -> None:
        self.client = client
        self.id = run_id
        self._path = f"/v1/runs/{_core.segment(run_id, 'run')}"
        self.last_info = info
        self._stdin_queue: asyncio.Queue[bytes | None] | None = None
        self._stdin_task: asyncio.Task[Any] | None = None

    def __repr__(self) -> str:
        return f"AsyncRun({self.id!r})"

    async def info(self) -> RunInfo:
        self.last_info = RunInfo.from_json(await self.client._request("GET", self._path))
        return self.last_info

    async def wait(self, timeout: float | None = None) -> RunInfo:
        params = {"timeout": timeout} if timeout is not None else None
        self.last_info = RunInfo.from_json(
            await self.client._request("POST", self._path + "/wait", params=params, timeout=None))
        return self.last_info

    async def cancel(self) -> RunInfo:
        return RunInfo.from_json(await self.client._request("POST", self._path + "/cancel", timeout=None))

    async def kill(self) -> RunInfo:
        return await self.cancel()

    async def resize(self, rows: int, cols: int) -> RunInfo:
        return RunInfo.from_json(await self.client._request("POST", self._path + "/resize", json={"rows": rows, "cols": cols}))

    async def signal(self, signal: int | str) -> RunInfo:
        return RunInfo.from_json(await self.client._request("POST", self._path + "/signal", json={"signal": signal}))

    async def stdout(self) -> bytes:
        return b"".join([c async for c in self.iter_output("stdout", follow=False)])

    async def stderr(self) -> bytes:
        return b"".join([c async for c in self.iter_output("stderr", follow=False)])

    async def iter_output(self, stream: str = "stdout", *, offset: int = 0, follow: bool = True) -> AsyncIterator[bytes]:
        params = {"follow": "true" if follow else "false", "offset": offset}
        async for chunk in self.client._stream_bytes(self._path + "/output/" + stream, params):
            yield chunk

    async def result(self, *, on_stdout: OutputCallback | None = None,
                     on_stderr: OutputCallback | None = None) -> ExecResult:
        async def follow(stream: str, callback: OutputCallback | None) -> bytes:
            chunks = []
            async for chunk in self.iter_output(stream, follow=True):
                chunks.append(chunk)
                if callback is not None:
                    maybe = callback(chunk)
                    if asyncio.iscoroutine(maybe):
                        await maybe
            return b"".join(chunks)

        out, err = await asyncio.gather(follow("stdout", on_stdout), follow("stderr", on_stderr))
        return ExecResult.of(await self.wait(), out, err)

    async def events(self, *, follow: bool = True) -> AsyncIterator[Event]:
        parser = _core.SSEParser()
        async for line in self.client._stream_lines(self._path + "/events", {"follow": "true" if follow else "false"}):
            event = parser.feed(line)
            if event is not None:
                yield Event.from_json(event)

    def _pump(self) -> asyncio.Queue[bytes | None]:
        if self._stdin_queue is None:
            q: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=16)

            async def body() -> AsyncIterator[bytes]:
                while True:
                    item = await q.get()
                    if item is None:
                        return
                    yield item

            self._stdin_queue = q
            self._stdin_task = asyncio.ensure_future(
                self.client._request("PUT", self._path + "/stdin", content=body(), timeout=None))
        return self._stdin_queue

    async def send_stdin(self, data: bytes | str) -> None:
        q = self._pump()
        assert self._stdin_task is not None
        if self._stdin_task.done():
            self._stdin_task.result()
            raise ValueError("stdin is closed")
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        if payload:
            put = asyncio.ensure_future(q.put(payload))
            done, _ = await asyncio.wait({put, self._stdin_task}, return_when=asyncio.FIRST_COMPLETED)
            if put not in done:
                put.cancel()
                self._stdin_task.result()
                raise ValueError("the stdin upload ended before all of it was sent")

    async def close_stdin(self) -> int:
        q = self._pump()
        assert self._stdin_task is not None
        if not self._stdin_task.done():
            put = asyncio.ensure_future(q.put(None))
            await asyncio.wait({put, self._stdin_task}, return_when=asyncio.FIRST_COMPLETED)
        answer = await self._stdin_task
        return int((answer or {}).get("bytes", 0))
