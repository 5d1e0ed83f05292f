"""What the sync and asyncio clients share: where the supervisor is, how a
request is built, how an answer is read. No I/O here."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence
from urllib.parse import quote

from .errors import InvalidRequest, error_from

DEFAULT_SOCKET = "/run/levain/levain.sock"


@dataclass(frozen=True)
class Address:
    """Where the control API listens: a Unix socket or TCP (with a bearer token)."""

    unix: str | None = None
    host: str | None = None
    port: int | None = None

    @staticmethod
    def parse(text: str) -> "Address":
        """``unix:PATH``, ``tcp:HOST:PORT`` or an absolute socket path (as ``levain --connect``)."""
        if text.startswith("unix:"):
            path = text[5:]
            if not path:
                raise ValueError(f"{text!r}: expected unix:PATH with a path")
            return Address(unix=path)
        if text.startswith("tcp:"):
            host, sep, port = text[4:].rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{text!r}: expected tcp:HOST:PORT")
            return Address(host=host.strip("[]"), port=int(port))
        if text.startswith("/"):
            return Address(unix=text)
        raise ValueError(f"{text!r}: expected unix:PATH, tcp:HOST:PORT or an absolute socket path")

    @staticmethod
    def resolve(connect: "str | Address | None") -> "Address":
        """The address given, else ``LEVAIN_CONNECT``, else the default socket."""
        if isinstance(connect, Address):
            return connect
        if connect:
            return Address.parse(connect)
        env = os.environ.get("LEVAIN_CONNECT", "")
        if env:
            try:
                return Address.parse(env)
            except ValueError as e:
                raise ValueError(f"LEVAIN_CONNECT={env}: {e}") from None
        return Address(unix=DEFAULT_SOCKET)

    @property
    def base_url(self) -> str:
        if self.unix is not None:
            return "http://levain"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __str__(self) -> str:
        return f"unix:{self.unix}" if self.unix is not None else f"tcp:{self.host}:{self.port}"


def headers(token: str | None, address: Address) -> dict[str, str]:
    """The bearer token (given, or ``LEVAIN_TOKEN``) for a TCP listener."""
    token = token if token is not None else os.environ.get("LEVAIN_TOKEN")
    h = {"User-Agent": "levain-python/0.1.0"}
    if token and address.unix is None:
        h["Authorization"] = f"Bearer {token}"
    return h


def segment(value: str, what: str) -> str:
    """One path segment of the API (a session or run id, a call id)."""
    if not isinstance(value, str) or not value or "/" in value:
        raise InvalidRequest(400, "invalid_request", f"{what} must be a non-empty string without '/': {value!r}", what)
    return quote(value, safe="")


def file_path(path: str, field: str = "path") -> str:
    """A path of the files API: relative to /workspace, or absolute under
    /workspace or /tmp. The supervisor checks it (and answers with the field
    and what to do instead); here only its type."""
    if not isinstance(path, str):
        raise TypeError(f"{field} must be a str, not {type(path).__name__}")
    return path


def with_query(path: str, params: Mapping[str, Any] | None) -> str:
    """``path?k=v&...`` with %20 for a space (the API takes ``+`` as a plus sign)."""
    if not params:
        return path
    from urllib.parse import urlencode
    return path + ("&" if "?" in path else "?") + urlencode({k: str(v) for k, v in params.items()}, quote_via=quote)


def file_url(base: str, path: str, **params: Any) -> str:
    """``base?path=...&k=v`` (the parameters that are not None)."""
    return with_query(base, {"path": file_path(path), **{k: v for k, v in params.items() if v is not None}})


def archive_query(root: str, exclude: Sequence[str] = ()) -> str:
    """``?path=ROOT&exclude=...`` of the archive route (%20 for a space)."""
    from urllib.parse import urlencode
    pairs = [("path", root)] + [("exclude", e) for e in exclude]
    return "?" + urlencode(pairs, quote_via=quote)


TAR_CHUNK = 1 << 20

#: exec asks for streams up to this size in the finished run's answer
#: (``inline_output``), saving a request per stream.
INLINE_OUTPUT = 256 << 10


def inlined(info: Any, name: str) -> bytes | None:
    """A stream the answer carried (``stdout_base64``), or None."""
    import base64
    value = info.raw.get(name + "_base64")
    return None if value is None else base64.b64decode(value)


def chunks_of(archive: Any) -> Any:
    """The body of an archive upload: bytes as they are, a file read in chunks."""
    if isinstance(archive, (bytes, bytearray, memoryview)):
        return bytes(archive)

    def read() -> Iterator[bytes]:
        while chunk := archive.read(TAR_CHUNK):
            yield chunk
    return read()


def session_body(*, policy: str | None, tenant: str | None, labels: Mapping[str, str] | None,
                 memory: int | str | None, cpus: float | None, pids: int | None, timeout: float | str | None,
                 binds_ro: Sequence[str], binds_rw: Sequence[str]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if policy is not None:
        body["policy"] = policy
    if tenant is not None:
        body["tenant"] = tenant
    if labels:
        body["labels"] = dict(labels)
    limits = {k: v for k, v in (("memory", memory), ("cpus", cpus), ("pids", pids), ("timeout", timeout)) if v is not None}
    if limits:
        body["limits"] = limits
    binds = {k: list(v) for k, v in (("ro", binds_ro), ("rw", binds_rw)) if v}
    if binds:
        body["binds"] = binds
    return body


def run_body(command: str | Sequence[str], *, env: Mapping[str, str] | None, cwd: str | None,
             timeout: float | str | None, stdin: bytes | str | None, stdin_stream: bool,
             cpu_time: float | str | None, file_size: int | str | None,
             idempotency_key: str | None, retry: str | None, wait: bool,
             pty: "bool | tuple[int, int] | None" = None) -> dict[str, Any]:
    """A run submission: a str is a shell command line (``/bin/sh -c``), a
    sequence is the argv. ``pty``: True (24x80) or (rows, cols) runs it on a
    pseudo-terminal."""
    body: dict[str, Any] = {}
    if isinstance(command, str):
        body["command"] = command
    else:
        argv = list(command)
        if not argv or not all(isinstance(a, str) for a in argv):
            raise InvalidRequest(400, "invalid_request", "argv must be a non-empty list of strings", "argv")
        body["argv"] = argv
    if env:
        body["env"] = dict(env)
    if cwd is not None:
        body["cwd"] = cwd
    if timeout is not None:
        body["timeout"] = timeout
    if cpu_time is not None:
        body["cpu_time"] = cpu_time
    if file_size is not None:
        body["file_size"] = file_size
    if stdin is not None:
        if isinstance(stdin, str):
            body["stdin"] = stdin
        else:
            import base64
            body["stdin_base64"] = base64.b64encode(bytes(stdin)).decode("ascii")
    if stdin_stream:
        body["stdin_stream"] = True
    if idempotency_key is not None:
        body["idempotency_key"] = idempotency_key
    if retry is not None:
        body["retry"] = retry
    if wait:
        body["wait"] = True
    if pty is True:
        body["pty"] = True
    elif pty:
        rows, cols = pty
        body["pty"] = {"rows": rows, "cols": cols}
    return body


def check(status: int, content: bytes) -> Any:
    """The JSON of a successful answer (None for an empty one); the typed
    error of a failed one."""
    body: Any = None
    if content:
        try:
            body = json.loads(content)
        except ValueError:
            body = None
    if status >= 400:
        raise error_from(status, body, content.decode("utf-8", "replace"))
    return body


@dataclass
class SSEParser:
    """Server-sent events, fed line by line (the event streams of the API)."""

    data: list[str] = field(default_factory=list)
    event: str | None = None
    id: str | None = None

    def feed(self, line: str) -> dict[str, Any] | None:
        """Returns the event JSON when ``line`` ends a message."""
        if line == "":
            if not self.data:
                self.event = None
                return None
            text = "\n".join(self.data)
            self.data, self.event = [], None
            try:
                value = json.loads(text)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self.data.append(value)
        elif name == "event":
            self.event = value
        elif name == "id":
            self.id = value
        return None
