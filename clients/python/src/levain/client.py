"""The synchronous client. :mod:`levain.aio` is the same API for asyncio."""

from __future__ import annotations

import queue
import threading
from typing import IO, Any, Callable, Iterable, Iterator, Mapping, Sequence

import httpx2

from . import _core
from ._core import Address
from .errors import APIError, ConnectionFailed, FileOperationFailed, NotFound
from .models import Event, ExecResult, FileInfo, FileResult, RunInfo, SessionInfo

OutputCallback = Callable[[bytes], None]


class Client:
    """A connection to ``levain serve``.

    ``connect``: ``unix:PATH``, ``tcp:HOST:PORT`` or a socket path; default
    ``LEVAIN_CONNECT``, else ``/run/levain/levain.sock``. ``token``: the
    bearer token of a TCP listener; default ``LEVAIN_TOKEN``. ``timeout``:
    seconds for ordinary requests (waits for runs have none).
    """

    def __init__(self, connect: "str | Address | None" = None, *, token: str | None = None,
                 timeout: float = 60.0) -> None:
        self.address = Address.resolve(connect)
        transport = httpx2.HTTPTransport(uds=self.address.unix) if self.address.unix is not None else httpx2.HTTPTransport()
        self._http = httpx2.Client(base_url=self.address.base_url, transport=transport,
                                   headers=_core.headers(token, self.address), timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing

    def _request(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
                 content: Any = None, timeout: Any = httpx2.USE_CLIENT_DEFAULT) -> Any:
        try:
            r = self._http.request(method, _core.with_query(path, params), json=json, content=content, timeout=timeout)
        except httpx2.TransportError as e:
            raise ConnectionFailed(f"levain at {self.address}: {e}") from e
        return _core.check(r.status_code, r.content)

    def _stream_lines(self, path: str, params: Mapping[str, Any]) -> Iterator[str]:
        try:
            with self._http.stream("GET", _core.with_query(path, params), timeout=None) as r:
                if r.status_code >= 400:
                    _core.check(r.status_code, r.read())
                yield from r.iter_lines()
        except httpx2.TransportError as e:
            raise ConnectionFailed(f"levain at {self.address}: {e}") from e

    def _stream_bytes(self, path: str, params: Mapping[str, Any]) -> Iterator[bytes]:
        try:
            with self._http.stream("GET", _core.with_query(path, params), timeout=None) as r:
                if r.status_code >= 400:
                    _core.check(r.status_code, r.read())
                yield from r.iter_bytes()
        except httpx2.TransportError as e:
            raise ConnectionFailed(f"levain at {self.address}: {e}") from e

    # -- service

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/v1/health")

    def version(self) -> dict[str, Any]:
        return self._request("GET", "/v1/version")

    # -- sessions

    def create_session(self, *, policy: str | None = None, tenant: str | None = None,
                       labels: Mapping[str, str] | None = None, memory: int | str | None = None,
                       cpus: float | None = None, pids: int | None = None, timeout: float | str | None = None,
                       binds_ro: Sequence[str] = (), binds_rw: Sequence[str] = ()) -> "Session":
        """Opens a session (a jail with its harness); returns once it is ready."""
        body = _core.session_body(policy=policy, tenant=tenant, labels=labels, memory=memory, cpus=cpus, pids=pids,
                                  timeout=timeout, binds_ro=binds_ro, binds_rw=binds_rw)
        info = SessionInfo.from_json(self._request("POST", "/v1/sessions", json=body, timeout=None))
        return Session(self, info.id, info)

    def session(self, session_id: str) -> "Session":
        """A handle on an existing session (no request is made)."""
        _core.segment(session_id, "session")
        return Session(self, session_id)

    def get_session(self, session_id: str) -> SessionInfo:
        return SessionInfo.from_json(self._request("GET", f"/v1/sessions/{_core.segment(session_id, 'session')}"))

    def list_sessions(self, *, tenant: str | None = None, status: str | None = None) -> list[SessionInfo]:
        params = {k: v for k, v in (("tenant", tenant), ("status", status)) if v is not None}
        return [SessionInfo.from_json(o) for o in self._request("GET", "/v1/sessions", params=params)["sessions"]]

    # -- runs

    def run(self, run_id: str) -> "Run":
        """A handle on an existing run (no request is made)."""
        _core.segment(run_id, "run")
        return Run(self, run_id)

    def get_run(self, run_id: str) -> RunInfo:
        return RunInfo.from_json(self._request("GET", f"/v1/runs/{_core.segment(run_id, 'run')}"))

    def list_runs(self, *, session: str | None = None, status: str | None = None) -> list[RunInfo]:
        params = {k: v for k, v in (("session", session), ("status", status)) if v is not None}
        return [RunInfo.from_json(o) for o in self._request("GET", "/v1/runs", params=params)["runs"]]

    # -- approvals, usage, log

    def approvals(self, session: str | None = None) -> list[dict[str, Any]]:
        """Tool calls waiting for a person's decision, oldest first."""
        params = {"session": session} if session else None
        return self._request("GET", "/v1/approvals", params=params)["approvals"]

    def decide(self, call_id: str, *, allow: bool, reason: str, by: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"decision": "allow" if allow else "deny", "reason": reason}
        if by is not None:
            body["by"] = by
        return self._request("POST", f"/v1/approvals/{_core.segment(call_id, 'call_id')}", json=body)

    def usage(self, *, session: str | None = None, tenant: str | None = None, run: str | None = None,
              by: str | None = None) -> dict[str, Any]:
        params = {k: v for k, v in (("session", session), ("tenant", tenant), ("run", run), ("by", by)) if v is not None}
        return self._request("GET", "/v1/usage", params=params)

    def log_events(self, *, session: str | None = None, run: str | None = None, after_seq: int | None = None,
                   after_id: int | None = None, limit: int | None = None) -> list[Event]:
        params = {k: v for k, v in (("session", session), ("run", run), ("after_seq", after_seq),
                                    ("after_id", after_id), ("limit", limit)) if v is not None}
        return [Event.from_json(o) for o in self._request("GET", "/v1/log/events", params=params)["events"]]

    def verify_log(self, session: str | None = None) -> dict[str, Any]:
        return self._request("GET", "/v1/log/verify", params={"session": session} if session else None)


class Session:
    """A session: its jail, workspace, runs and events."""

    def __init__(self, client: Client, session_id: str, info: SessionInfo | None = None) -> None:
        self.client = client
        self.id = session_id
        self._path = f"/v1/sessions/{_core.segment(session_id, 'session')}"
        self.files = Files(client, self._path)
        self.last_info = info

    def __repr__(self) -> str:
        return f"Session({self.id!r})"

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def info(self) -> SessionInfo:
        self.last_info = SessionInfo.from_json(self.client._request("GET", self._path))
        return self.last_info

    def close(self) -> SessionInfo:
        """Kills its runs and stops its jail; the workspace stays on the host."""
        return SessionInfo.from_json(self.client._request("DELETE", self._path, timeout=None))

    def reopen(self) -> SessionInfo:
        return SessionInfo.from_json(self.client._request("POST", self._path + "/reopen", timeout=None))

    def pause(self) -> SessionInfo:
        """Freezes every running process of the session (the cgroup freezer)
        until :meth:`resume`; files stay readable and writable; new runs are
        refused (409) meanwhile. Wall-clock timeouts keep counting."""
        return SessionInfo.from_json(self.client._request("POST", self._path + "/pause"))

    def resume(self) -> SessionInfo:
        """Thaws what :meth:`pause` froze."""
        return SessionInfo.from_json(self.client._request("POST", self._path + "/resume"))

    def start(self, command: str | Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None,
              timeout: float | str | None = None, stdin: bytes | str | None = None, stdin_stream: bool = False,
              cpu_time: float | str | None = None, file_size: int | str | None = None,
              idempotency_key: str | None = None, retry: str | None = None,
              pty: bool | tuple[int, int] | None = None) -> "Run":
        """Submits a run and returns at once (it is queued): a :class:`Run` to
        wait for, read, signal, cancel or feed (``stdin_stream=True``)."""
        body = _core.run_body(command, env=env, cwd=cwd, timeout=timeout, stdin=stdin, stdin_stream=stdin_stream,
                              cpu_time=cpu_time, file_size=file_size, idempotency_key=idempotency_key,
                              retry=retry, wait=False, pty=pty)
        info = RunInfo.from_json(self.client._request("POST", self._path + "/runs", json=body))
        return Run(self.client, info.id, info)

    def exec(self, command: str | Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None,
             timeout: float | str | None = None, stdin: bytes | str | None = None,
             on_stdout: OutputCallback | None = None, on_stderr: OutputCallback | None = None,
             check: bool = False, pty: bool | tuple[int, int] | None = None) -> ExecResult:
        """Runs a command (a str: ``/bin/sh -c``; a list: argv) to its end.
        ``timeout``: the run's wall-clock limit (then ``status == "timed_out"``).
        ``on_stdout``/``on_stderr`` get the output as it arrives. ``check``:
        raise CommandFailed/CommandTimedOut unless it succeeded."""
        if on_stdout is None and on_stderr is None:
            body = _core.run_body(command, env=env, cwd=cwd, timeout=timeout, stdin=stdin, stdin_stream=False,
                                  cpu_time=None, file_size=None, idempotency_key=None, retry=None, wait=True, pty=pty)
            body["inline_output"] = _core.INLINE_OUTPUT
            info = RunInfo.from_json(self.client._request("POST", self._path + "/runs", json=body, timeout=None))
            run = Run(self.client, info.id, info)
            # Small streams come in the answer; an empty one is not fetched.
            out, err = _core.inlined(info, "stdout"), _core.inlined(info, "stderr")
            result = ExecResult.of(info, out if out is not None else run.stdout() if info.stdout_bytes else b"",
                                   err if err is not None else run.stderr() if info.stderr_bytes else b"")
        else:
            run = self.start(command, env=env, cwd=cwd, timeout=timeout, stdin=stdin, pty=pty)
            result = run.result(on_stdout=on_stdout, on_stderr=on_stderr)
        return result.check() if check else result

    def agent_run(self, agent: str, input: str, *, agent_file: str | None = None, wait: bool = True) -> RunInfo:
        """Runs the built-in agent loop (``agent``: the text of an agent file)."""
        body: dict[str, Any] = {"agent": agent, "input": input, "wait": wait}
        if agent_file is not None:
            body["agent_file"] = agent_file
        return RunInfo.from_json(self.client._request("POST", self._path + "/agent-runs", json=body, timeout=None))

    def tools(self) -> list[dict[str, Any]]:
        return self.client._request("GET", self._path + "/tools")["tools"]

    def export_workspace(self, root: str = "/workspace", *, exclude: Sequence[str] = ()) -> bytes:
        """The workspace (or `root`, a directory beneath /workspace or /tmp)
        as a tar archive, member names relative to it ("./src/a.py"), made by
        GNU tar inside the jail as the jail user (a run, in the log);
        `exclude`: tar patterns relative to `root` left out."""
        return b"".join(self.client._stream_bytes(self._path + "/archive" + _core.archive_query(root, exclude), {}))

    def import_workspace(self, archive: bytes | IO[bytes], root: str = "/workspace") -> int:
        """Unpacks a tar archive into the workspace (or `root`, made when
        missing), inside the jail as the jail user. An archive tar refuses
        (a member with '..', a hard link to a missing file, a cut archive)
        raises InvalidRequest with tar's message and unpacks nothing.
        Returns the bytes sent."""
        r = self.client._request("PUT", self._path + "/archive" + _core.archive_query(root),
                                 content=_core.chunks_of(archive), timeout=None)
        return int(r["bytes"])

    def events(self, *, after: int | None = None, follow: bool = False) -> Iterator[Event]:
        """The session's log events (server-sent events); ``follow`` keeps waiting for new ones."""
        params: dict[str, Any] = {"follow": "true" if follow else "false"}
        if after is not None:
            params["after"] = after
        parser = _core.SSEParser()
        for line in self.client._stream_lines(self._path + "/events", params):
            event = parser.feed(line)
            if event is not None:
                yield Event.from_json(event)


class Files:
    """A session's workspace, read and written by its harness as the jail user.
    Paths are relative to /workspace (or absolute under it)."""

    def __init__(self, client: Client, session_path: str) -> None:
        self.client = client
        self._path = session_path

    def read(self, path: str) -> bytes:
        return b"".join(self.client._stream_bytes(self._path + "/file", {"path": _core.file_path(path)}))

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return self.read(path).decode(encoding)

    def write(self, path: str, data: bytes | str | IO[bytes], *, mode: int | None = None) -> int:
        """Writes a file (all or nothing; parents made); returns its size."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        elif not isinstance(data, (bytes, bytearray, memoryview)):
            data = data.read()
        r = self.client._request("PUT", _core.file_url(self._path + "/file", path, mode=mode), content=bytes(data),
                                 timeout=None)
        return int(r["size"])

    def list(self, path: str = ".") -> list[FileInfo]:
        directory = _core.file_path(path)
        r = self.client._request("GET", _core.file_url(self._path + "/files", directory))
        return [FileInfo.from_json(e, directory) for e in r["entries"]]

    def stat(self, path: str) -> FileInfo:
        return FileInfo.from_json(self.client._request("GET", _core.file_url(self._path + "/stat", path)))

    def exists(self, path: str) -> bool:
        try:
            self.stat(path)
            return True
        except NotFound:
            return False

    def remove(self, path: str, *, recursive: bool = False) -> None:
        self.client._request("DELETE", _core.file_url(self._path + "/file", path, recursive="true" if recursive else "false"))

    def mkdir(self, path: str, *, parents: bool = False, mode: int | None = None) -> None:
        """Makes a directory (``parents``: and the missing ones above it, no
        error if it exists)."""
        body: dict[str, Any] = {"path": _core.file_path(path), "parents": parents}
        if mode is not None:
            body["mode"] = mode
        self.client._request("POST", self._path + "/mkdir", json=body)

    def rename(self, path: str, to: str) -> None:
        """Moves a file, directory or symlink within the workspace (a file at ``to`` is replaced)."""
        self.client._request("POST", self._path + "/rename", json={"path": _core.file_path(path), "to": _core.file_path(to, "to")})

    def upload(self, files: Mapping[str, bytes | str] | Iterable[tuple[str, bytes | str]]) -> list[FileResult]:
        """Writes many files; a result per file, in order: one that fails
        (its error in ``error``) does not stop the others."""
        items = list(files.items()) if isinstance(files, Mapping) else list(files)
        results = []
        for path, data in items:
            try:
                self.write(path, data)
                results.append(FileResult(path))
            except (APIError, ValueError, TypeError) as e:
                results.append(FileResult(path, error=e))
        return results

    def download(self, paths: Iterable[str]) -> list[FileResult]:
        """Reads many files; a result per file, in order, each with its
        content or its error."""
        results = []
        for path in paths:
            try:
                results.append(FileResult(path, content=self.read(path)))
            except (APIError, ValueError, TypeError) as e:
                results.append(FileResult(path, error=e))
        return results


class Run:
    """A run: wait for it, read its output, signal, cancel, feed its stdin."""

    def __init__(self, client: Client, run_id: str, info: RunInfo | None = None) -> None:
        self.client = client
        self.id = run_id
        self._path = f"/v1/runs/{_core.segment(run_id, 'run')}"
        self.last_info = info
        self._stdin: _StdinPump | None = None

    def __repr__(self) -> str:
        return f"Run({self.id!r})"

    def info(self) -> RunInfo:
        self.last_info = RunInfo.from_json(self.client._request("GET", self._path))
        return self.last_info

    def wait(self, timeout: float | None = None) -> RunInfo:
        """The run once it has ended (or, with ``timeout`` seconds passed, as it is)."""
        params = {"timeout": timeout} if timeout is not None else None
        self.last_info = RunInfo.from_json(self.client._request("POST", self._path + "/wait", params=params, timeout=None))
        return self.last_info

    def cancel(self) -> RunInfo:
        return RunInfo.from_json(self.client._request("POST", self._path + "/cancel", timeout=None))

    def signal(self, signal: int | str) -> RunInfo:
        return RunInfo.from_json(self.client._request("POST", self._path + "/signal", json={"signal": signal}))

    def resize(self, rows: int, cols: int) -> RunInfo:
        """A new size for the terminal of a run started with ``pty`` (its
        foreground processes get SIGWINCH)."""
        return RunInfo.from_json(self.client._request("POST", self._path + "/resize", json={"rows": rows, "cols": cols}))

    def kill(self) -> RunInfo:
        """Kills every process of the run (its cgroup) and waits for its end."""
        return self.cancel()

    def stdout(self) -> bytes:
        """The stdout kept so far (all of it once the run has ended)."""
        return b"".join(self.iter_output("stdout", follow=False))

    def stderr(self) -> bytes:
        return b"".join(self.iter_output("stderr", follow=False))

    def iter_output(self, stream: str = "stdout", *, offset: int = 0, follow: bool = True) -> Iterator[bytes]:
        """The stream's bytes from ``offset``; ``follow``: until the run's stream ends."""
        params = {"follow": "true" if follow else "false", "offset": offset}
        yield from self.client._stream_bytes(self._path + "/output/" + stream, params)

    def result(self, *, on_stdout: OutputCallback | None = None, on_stderr: OutputCallback | None = None) -> ExecResult:
        """Follows both streams to their end (calling the callbacks as bytes
        arrive), waits for the run, and returns its result."""
        chunks: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        failure: list[BaseException] = []

        def follow(stream: str, callback: OutputCallback | None) -> None:
            try:
                for chunk in self.iter_output(stream, follow=True):
                    chunks[stream].append(chunk)
                    if callback is not None:
                        callback(chunk)
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                failure.append(e)

        other = threading.Thread(target=follow, args=("stderr", on_stderr), daemon=True)
        other.start()
        follow("stdout", on_stdout)
        other.join()
        if failure:
            raise failure[0]
        info = self.wait()
        return ExecResult.of(info, b"".join(chunks["stdout"]), b"".join(chunks["stderr"]))

    def events(self, *, follow: bool = True) -> Iterator[Event]:
        parser = _core.SSEParser()
        for line in self.client._stream_lines(self._path + "/events", {"follow": "true" if follow else "false"}):
            event = parser.feed(line)
            if event is not None:
                yield Event.from_json(event)

    def send_stdin(self, data: bytes | str) -> None:
        """Sends bytes to the stdin of a run started with ``stdin_stream=True``
        (one upload, streamed: the first call starts it)."""
        if self._stdin is None:
            self._stdin = _StdinPump(self.client, self._path + "/stdin")
        self._stdin.send(data.encode("utf-8") if isinstance(data, str) else bytes(data))

    def close_stdin(self) -> int:
        """Ends the run's stdin; returns how many bytes it got."""
        if self._stdin is None:
            self._stdin = _StdinPump(self.client, self._path + "/stdin")
        return self._stdin.close()


class _StdinPump:
    """One streaming PUT of a run's stdin, fed from the caller's thread."""

    def __init__(self, client: Client, path: str) -> None:
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        self._answer: Any = None
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._put, args=(client, path), daemon=True)
        self._thread.start()

    def _body(self) -> Iterator[bytes]:
        while True:
            item = self._queue.get()
            if item is None:
                return
            yield item

    def _put(self, client: Client, path: str) -> None:
        try:
            self._answer = client._request("PUT", path, content=self._body(), timeout=None)
        except BaseException as e:  # noqa: BLE001 - raised in the caller's thread
            self._error = e

    def send(self, data: bytes) -> None:
        if self._closed:
            raise ValueError("stdin is closed")
        if self._error is not None:
            raise self._error
        if data:
            while self._thread.is_alive():
                try:
                    self._queue.put(data, timeout=0.1)
                    return
                except queue.Full:
                    continue
            if self._error is not None:
                raise self._error
            raise FileOperationFailed("the stdin upload ended before all of it was sent")

    def close(self) -> int:
        if not self._closed:
            self._closed = True
            while self._thread.is_alive():
                try:
                    self._queue.put(None, timeout=0.1)
                    break
                except queue.Full:
                    continue
            self._thread.join()
        if self._error is not None:
            raise self._error
        return int((self._answer or {}).get("bytes", 0))
