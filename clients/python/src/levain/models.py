"""What the API answers, as typed values. Each keeps the whole JSON in
``raw`` for what is not modelled (the API may add keys)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import CommandFailed, CommandTimedOut

#: Run statuses after which nothing changes.
FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled", "timed_out", "error", "interrupted"})


@dataclass(frozen=True)
class SessionInfo:
    id: str
    status: str
    tenant: str
    policy: str
    labels: dict[str, str]
    limits: dict[str, Any]
    workspace: str | None
    created_at: str
    closed_at: str | None
    raw: dict[str, Any] = field(repr=False)
    #: Its runs frozen by :meth:`Session.pause` until :meth:`Session.resume`.
    paused: bool = False

    @staticmethod
    def from_json(o: dict[str, Any]) -> "SessionInfo":
        return SessionInfo(id=o["id"], status=o.get("status", ""), tenant=o.get("tenant", ""),
                           policy=o.get("policy", ""), labels=dict(o.get("labels") or {}),
                           limits=dict(o.get("limits") or {}), workspace=o.get("workspace"),
                           created_at=o.get("created_at", ""), closed_at=o.get("closed_at"), raw=o,
                           paused=bool(o.get("paused", False)))


@dataclass(frozen=True)
class RunInfo:
    id: str
    session: str
    status: str
    exit_code: int | None
    signal: int | None
    exit_status: int | None
    error: str | None
    attempt: int
    request: dict[str, Any]
    stdout_bytes: int
    stderr_bytes: int
    output_truncated: bool
    created_at: str
    started_at: str | None
    finished_at: str | None
    raw: dict[str, Any] = field(repr=False)

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    @staticmethod
    def from_json(o: dict[str, Any]) -> "RunInfo":
        return RunInfo(id=o["id"], session=o.get("session", ""), status=o.get("status", ""),
                       exit_code=o.get("exit_code"), signal=o.get("signal"), exit_status=o.get("exit_status"),
                       error=o.get("error"), attempt=int(o.get("attempt") or 1), request=dict(o.get("request") or {}),
                       stdout_bytes=int(o.get("stdout_bytes") or 0), stderr_bytes=int(o.get("stderr_bytes") or 0),
                       output_truncated=bool(o.get("output_truncated", False)), created_at=o.get("created_at", ""),
                       started_at=o.get("started_at"), finished_at=o.get("finished_at"), raw=o)


@dataclass(frozen=True)
class ExecResult:
    """A finished command: its status, exit status and output."""

    run_id: str
    status: str
    exit_code: int | None
    exit_status: int | None
    signal: int | None
    error: str | None
    stdout_bytes: bytes = field(repr=False)
    stderr_bytes: bytes = field(repr=False)
    output_truncated: bool = False

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return self.stderr_bytes.decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    def check(self) -> "ExecResult":
        """Itself when the command succeeded; else raises CommandTimedOut or CommandFailed."""
        if self.status == "timed_out":
            raise CommandTimedOut(self)
        if self.status != "succeeded":
            raise CommandFailed(self)
        return self

    @staticmethod
    def of(run: RunInfo, stdout: bytes, stderr: bytes) -> "ExecResult":
        return ExecResult(run_id=run.id, status=run.status, exit_code=run.exit_code, exit_status=run.exit_status,
                          signal=run.signal, error=run.error, stdout_bytes=stdout, stderr_bytes=stderr,
                          output_truncated=run.output_truncated)


@dataclass(frozen=True)
class FileInfo:
    """A workspace entry (``type``: file, dir, symlink or other; ``mode``: permission bits)."""

    path: str
    name: str
    type: str
    size: int
    mode: int
    mtime: int

    @property
    def is_dir(self) -> bool:
        return self.type == "dir"

    @staticmethod
    def from_json(o: dict[str, Any], directory: str | None = None) -> "FileInfo":
        name = o.get("name", "")
        if directory is None:
            path = o.get("path", name)
        else:
            path = name if directory in (".", "") else f"{directory.rstrip('/')}/{name}"
        return FileInfo(path=path, name=name, type=o.get("type", "other"), size=int(o.get("size") or 0),
                        mode=int(o.get("mode") or 0), mtime=int(o.get("mtime") or 0))


@dataclass(frozen=True)
class FileResult:
    """One file of a batch upload or download: its content (downloads) or
    the error that file got; the other files of the batch are unaffected."""

    path: str
    content: bytes | None = field(default=None, repr=False)
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Event:
    """An event of the session log (``payload`` parsed)."""

    id: int
    session: str
    seq: int
    run: str | None
    type: str
    time: str
    payload: dict[str, Any]
    raw: dict[str, Any] = field(repr=False)

    @staticmethod
    def from_json(o: dict[str, Any]) -> "Event":
        return Event(id=int(o.get("id") or 0), session=o.get("session", ""), seq=int(o.get("seq") or 0),
                     run=o.get("run"), type=o.get("type", ""), time=o.get("time", ""),
                     payload=o.get("payload") if isinstance(o.get("payload"), dict) else {}, raw=o)
