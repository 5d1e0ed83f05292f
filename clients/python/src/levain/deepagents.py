"""Levain as the sandbox backend of LangChain deepagents.

    import levain
    from levain.deepagents import LevainSandbox
    from deepagents import create_deep_agent

    session = levain.Client().create_session(policy="default")
    agent = create_deep_agent(model=..., backend=LevainSandbox(session))

Every shell command and file operation of the agent runs in the session's
jail, as its jail user, under its policy, recorded in the session log.
`LevainSandbox` implements deepagents' `BaseSandbox` (its ls/read/write/
edit/grep/glob tools run `python3` scripts through `execute`, so the jail's
root needs python3: the default policy's has it). Paths are the jail's:
absolute under /workspace or /tmp, or relative to /workspace; commands run
in /workspace.

`LevainProvider` is the provider of the deepagents-code CLI (entry point
`levain` in the group `deepagents_code.sandbox_providers`): `get_or_create()`
opens a session on the supervisor `LEVAIN_CONNECT` (or the default socket)
names, `get_or_create(sandbox_id=ID)` takes an open one, `delete(sandbox_id=ID)`
closes it.
"""

from __future__ import annotations

from typing import Any

from deepagents.backends.protocol import ExecuteResponse, FileDownloadResponse, FileUploadResponse
from deepagents.backends.sandbox import BaseSandbox

from .client import Client, Session
from .errors import APIError, InvalidRequest, LevainError, NotFound, PermissionDenied

#: deepagents' LocalShellBackend defaults: 120 s per command, 100 kB of output.
DEFAULT_TIMEOUT = 120
DEFAULT_MAX_OUTPUT_BYTES = 100_000


def file_error(error: Exception) -> str:
    """deepagents' name for a file operation's error (`FileOperationError`)."""
    errno = getattr(error, "errno", None)
    if isinstance(error, PermissionDenied) or errno in ("EACCES", "EPERM", "EROFS"):
        return "permission_denied"
    if errno == "EISDIR":
        return "is_directory"
    if isinstance(error, NotFound):
        return "file_not_found"
    if isinstance(error, (InvalidRequest, ValueError, TypeError)):
        return "invalid_path"
    return str(error)


class LevainSandbox(BaseSandbox):
    """A Levain session as a deepagents sandbox backend.

    ``timeout``: the default limit of a command, in seconds (the run is
    killed, with its whole process tree, when it passes). ``max_output_bytes``:
    the output handed to the model is cut there (and ``truncated`` set).
    ``close_on_delete``: :meth:`close` also closes the session.
    """

    def __init__(self, session: Session, *, timeout: int = DEFAULT_TIMEOUT,
                 max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES, close_on_delete: bool = False) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.session = session
        self._default_timeout = timeout
        self._max_output_bytes = max_output_bytes
        self._close_on_delete = close_on_delete

    @property
    def id(self) -> str:
        return self.session.id

    def close(self) -> None:
        if self._close_on_delete:
            self.session.close()

    def execute(self, command: str, *, timeout: int | None = None) -> ExecuteResponse:
        """Runs ``command`` with ``/bin/sh -c`` in /workspace; stdout, then
        stderr lines prefixed ``[stderr]``, as deepagents' local shell does.
        ``timeout`` 0 means the policy's own limit."""
        limit = self._default_timeout if timeout is None else timeout
        try:
            result = self.session.exec(command, timeout=limit if limit > 0 else None)
        except LevainError as e:
            return ExecuteResponse(output=f"Error: the sandbox could not run the command: {e}", exit_code=None)
        if result.status == "timed_out":
            partial = result.stdout[-2000:]
            return ExecuteResponse(
                output=(partial + "\n" if partial else "")
                + f"Error: Command timed out after {limit} seconds (the sandbox killed it). "
                + "For long-running commands, re-run using the timeout parameter.",
                exit_code=124)
        parts = []
        if result.stdout:
            parts.append(result.stdout)
        if result.stderr:
            parts.extend(f"[stderr] {line}" for line in result.stderr.strip().split("\n"))
        if result.status == "error":
            parts.append(f"[levain] {result.error}")
        output = "\n".join(parts) if parts else "<no output>"
        truncated = result.output_truncated
        data = output.encode("utf-8")
        if len(data) > self._max_output_bytes:
            output = data[: self._max_output_bytes].decode("utf-8", errors="ignore")
            output += f"\n\n... Output truncated at {self._max_output_bytes} bytes."
            truncated = True
        exit_code = result.exit_status
        if exit_code not in (0, None):
            output = f"{output.rstrip()}\n\nExit code: {exit_code}"
        return ExecuteResponse(output=output, exit_code=exit_code, truncated=truncated)

    def upload_files(self, files: list[tuple[str, bytes]]) -> list[FileUploadResponse]:
        """Writes each file (all or nothing per file, parents made); a
        response per file, in order, with deepagents' error names."""
        return [FileUploadResponse(path=r.path, error=None if r.ok else file_error(r.error))
                for r in self.session.files.upload(files)]

    def download_files(self, paths: list[str]) -> list[FileDownloadResponse]:
        return [FileDownloadResponse(path=r.path, content=r.content, error=None if r.ok else file_error(r.error))
                for r in self.session.files.download(paths)]


try:  # The deepagents-code CLI's provider interface, when it is installed.
    from deepagents_code.integrations.sandbox_provider import (  # type: ignore[import-not-found]
        SandboxNotFoundError,
        SandboxProvider,
        SandboxProviderMetadata,
    )
except ImportError:  # pragma: no cover - exercised without deepagents-code
    SandboxProvider = object  # type: ignore[assignment,misc]
    SandboxProviderMetadata = None  # type: ignore[assignment,misc]

    class SandboxNotFoundError(LookupError):  # type: ignore[no-redef]
        pass


class LevainProvider(SandboxProvider):  # type: ignore[misc,valid-type]
    """Sessions of the supervisor ``LEVAIN_CONNECT`` names, as deepagents-code sandboxes."""

    def __init__(self, client: Client | None = None) -> None:
        self.client = client if client is not None else Client()

    @property
    def metadata(self) -> Any:
        if SandboxProviderMetadata is None:
            return None
        return SandboxProviderMetadata(name="levain", working_dir="/workspace", supports_sandbox_id=True,
                                       backend_module="levain.deepagents")

    def get_or_create(self, *, sandbox_id: str | None = None, policy: str | None = None,
                      timeout: int = DEFAULT_TIMEOUT, **kwargs: Any) -> LevainSandbox:
        """An open session by id (reopened if its jail had failed), or a new
        one (``policy``; other keyword arguments as ``Client.create_session``)."""
        if sandbox_id is not None:
            try:
                session = self.client.session(sandbox_id)
                info = session.info()
            except (NotFound, InvalidRequest) as e:
                raise SandboxNotFoundError(sandbox_id) from e
            if info.status == "closed":
                raise SandboxNotFoundError(f"{sandbox_id} is closed")
            return LevainSandbox(session, timeout=timeout)
        allowed = {"tenant", "labels", "memory", "cpus", "pids", "binds_ro", "binds_rw"}
        options = {k: v for k, v in kwargs.items() if k in allowed}
        return LevainSandbox(self.client.create_session(policy=policy, **options), timeout=timeout)

    def delete(self, *, sandbox_id: str, **kwargs: Any) -> None:
        try:
            self.client.session(sandbox_id).close()
        except NotFound as e:
            raise SandboxNotFoundError(sandbox_id) from e

    async def aget_or_create(self, *, sandbox_id: str | None = None, **kwargs: Any) -> LevainSandbox:
        import asyncio
        return await asyncio.to_thread(lambda: self.get_or_create(sandbox_id=sandbox_id, **kwargs))

    async def adelete(self, *, sandbox_id: str, **kwargs: Any) -> None:
        import asyncio
        await asyncio.to_thread(lambda: self.delete(sandbox_id=sandbox_id, **kwargs))


__all__ = ["LevainSandbox", "LevainProvider", "file_error", "APIError"]
