"""A real `levain serve` for the client's tests: started once per test run
with its own socket and state directory, stopped (SIGTERM) at the end.

LEVAIN_BIN names the binary (make test sets it); it must run as root (the
jail needs it), as `make test` does."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import levain

REPO = Path(__file__).resolve().parents[3]


def _binary() -> str:
    path = os.environ.get("LEVAIN_BIN") or str(REPO / ".build" / "debug" / "levain")
    if not os.access(path, os.X_OK):
        pytest.exit(f"no levain binary at {path}: build it (swift build) or set LEVAIN_BIN", returncode=2)
    return path


class Supervisor:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = str(directory / "sock")
        self.state = str(directory / "state")
        self.config = directory / "levain.toml"
        self.log = directory / "serve.log"
        self.config.write_text(
            f'[supervisor]\nsocket = "{self.socket}"\nstate = "{self.state}"\nshutdown_grace = "5s"\n')
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen([_binary(), "serve", "--config", str(self.config)],
                                            stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"levain serve exited: {self.log.read_text()}")
            try:
                with levain.Client(f"unix:{self.socket}", timeout=2) as c:
                    c.health()
                return
            except levain.LevainError:
                time.sleep(0.05)
        raise RuntimeError(f"levain serve did not answer within 60 s: {self.log.read_text()}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@pytest.fixture(scope="session")
def supervisor():
    if os.geteuid() != 0:
        pytest.skip("the jail needs root (run as make test does)")
    directory = Path(tempfile.mkdtemp(prefix="levain-py-tests-", dir="/tmp"))
    sv = Supervisor(directory)
    sv.start()
    try:
        yield sv
    finally:
        sv.stop()
        if not os.environ.get("LEVAIN_KEEP_TEST_DIRS"):
            shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture()
def client(supervisor):
    with levain.Client(f"unix:{supervisor.socket}") as c:
        yield c


@pytest.fixture()
def session(client):
    s = client.create_session(labels={"suite": "python-client"})
    try:
        yield s
    finally:
        s.close()


@pytest.fixture()
def provider_url(tmp_path):
    port_file = tmp_path / "port"
    proc = subprocess.Popen([sys.executable, str(REPO / "Tests" / "Fixtures" / "scripted_provider.py"),
                             "--port", "0", "--port-file", str(port_file)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the scripted provider did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port_file.read_text().strip()}"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
