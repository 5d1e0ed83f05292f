#!/usr/bin/env python3
"""Writes the seed corpus of Tools/fuzz/FuzzProtocol.swift into corpus/protocol/.

Each file is a byte stream of frames. Frames from the harness use the ids,
runs and streams of the fuzzer's synthetic session (see FuzzProtocol.swift);
frames from the supervisor drive its HarnessConnectionState. The last few
seeds are malformed on purpose. Run it again after changing the session.
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "protocol")

HELLO, WELCOME, REQUEST, RESPONSE, EVENT, DATA, WINDOW, PING, PONG = 0x01, 0x02, 0x10, 0x11, 0x20, 0x30, 0x31, 0x40, 0x41
RUN1, RUN2 = "r-000000000001", "r-000000000002"


def frame(kind, body):
    return struct.pack(">IB", len(body) + 1, kind) + body


def js(kind, obj):
    return frame(kind, json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode())


def data(stream, payload=b""):
    return frame(DATA, struct.pack(">I", stream) + payload)


def window(stream, credit):
    return frame(WINDOW, struct.pack(">II", stream, credit))


def ping(nonce):
    return frame(PING, struct.pack(">Q", nonce))


def pong(nonce):
    return frame(PONG, struct.pack(">Q", nonce))


def started(run, pid=42):
    return js(EVENT, {"event": "process.started", "run": run, "pid": pid})


def exited(run, pid=42, code=0, signal=None):
    return js(EVENT, {"event": "process.exited", "run": run, "pid": pid, "code": code, "signal": signal,
                      "user_us": 1200, "system_us": 300, "max_rss_kb": 5120})


def ok(id, **result):
    return js(RESPONSE, dict({"id": id, "ok": True}, **result))


def fail(id, code, message):
    return js(RESPONSE, {"id": id, "ok": False, "error": {"code": code, "message": message}})


ENTRY = {"name": "a.txt", "type": "file", "size": 12, "mode": 420, "mtime": 1764044400}

SEEDS = {
    # From the harness (SupervisorConnectionState).
    "hello": js(HELLO, {"protocol": 1, "harness": "levain-harness 0.2.0", "pid": 1}),
    "hello-ping-log": js(HELLO, {"protocol": 1, "harness": "h", "pid": 1}) + ping(7)
        + js(EVENT, {"event": "harness.log", "level": "info", "message": "ready"}),
    "run1-life": started(RUN1) + data(2, b"hello\n") + data(3, b"warning\n") + ok(1, pid=42)
        + data(2) + data(3) + exited(RUN1),
    "run1-stdin-credit": window(1, 0) + ok(1, pid=42) + exited(RUN1, code=None, signal=15),
    "run2-enoent": fail(9, "ENOENT", "ls: not found"),
    "run2-killed": ok(9, pid=7) + started(RUN2, 7) + data(7, b"x" * 300) + data(8) + exited(RUN2, 7, None, 9) + data(7),
    "file-read": data(4, b"content") + data(4) + ok(2, size=7),
    "file-read-efbig": fail(2, "EFBIG", "larger than max_bytes"),
    "file-write-early-error": window(5, 100) + fail(3, "ENOSPC", "no space"),
    "file-write-ok": window(6, 50) + ok(4, size=50),
    "file-list": ok(5, entries=[ENTRY, dict(ENTRY, name="sub", type="dir"), dict(ENTRY, name="l", type="symlink")]),
    "file-stat": ok(6, type="file", size=7, mode=420, mtime=1764044400),
    "file-delete-signal": ok(7) + ok(8),
    "all-responses": ok(8) + ok(7) + ok(6, type="dir", size=0, mode=493, mtime=0) + ok(5, entries=[])
        + fail(4, "EIO", "") + fail(3, "EFBIG", "") + data(4) + ok(2, size=0) + fail(1, "EACCES", "denied"),
    "pings": ping(1) + ping(2**64 - 1),
    "stdout-window": data(2, b"a" * 1000) + data(2, b"b" * 1000) + data(2, b"c" * 1000) + data(2, b"d" * 1000),
    "log-levels": b"".join(js(EVENT, {"event": "harness.log", "level": level, "message": "m\u00e9\n"})
                           for level in ("info", "warning", "error")),
    # From the supervisor (HarnessConnectionState).
    "welcome": js(WELCOME, {"protocol": 1, "max_frame": 1048576, "heartbeat_ms": 2000, "window": 262144, "session": "s-1"}),
    "request-run-start": js(REQUEST, {"id": 10, "op": "run.start", "run": "r-0000000000aa", "argv": ["/bin/sh", "-c", "cat"],
                                      "env": ["PATH=/usr/bin:/bin", "HOME=/workspace"], "cwd": "/workspace", "stdin": 21,
                                      "stdout": 22, "stderr": 23, "cgroup": True,
                                      "rlimits": {"cpu": [10, 20], "nofile": [256, 256], "core": [0, 0], "stack": [None, None]}})
        + data(21, b"input\n") + data(21) + window(22, 0) + ping(3),
    "request-files": js(REQUEST, {"id": 11, "op": "file.read", "path": "out/result.json", "stream": 31, "max_bytes": 1048576})
        + js(REQUEST, {"id": 12, "op": "file.write", "path": "in/data.csv", "stream": 32, "max_bytes": 67108864, "mode": 420})
        + data(32, b"a,b\n1,2\n") + data(32)
        + js(REQUEST, {"id": 13, "op": "file.list", "path": "."})
        + js(REQUEST, {"id": 14, "op": "file.stat", "path": "a.txt"})
        + js(REQUEST, {"id": 15, "op": "file.delete", "path": "a.txt", "recursive": False}),
    "request-signal": js(REQUEST, {"id": 16, "op": "run.signal", "run": "r-0000000000aa", "signal": 15}),
    # Version 2: file.mkdir, file.rename, /tmp paths (after a version 2 WELCOME).
    "welcome-v2-files": js(WELCOME, {"protocol": 2, "max_frame": 1048576, "heartbeat_ms": 2000, "window": 262144, "session": "s-1"})
        + js(REQUEST, {"id": 17, "op": "file.mkdir", "path": "out/logs", "parents": True, "mode": 493})
        + js(REQUEST, {"id": 18, "op": "file.rename", "path": "a.txt", "to": "out/a.txt"})
        + js(REQUEST, {"id": 19, "op": "file.stat", "path": "/tmp/x"}),
    # Version 3: a run on a pseudo-terminal, run.resize.
    "welcome-v3-pty": js(WELCOME, {"protocol": 3, "max_frame": 1048576, "heartbeat_ms": 2000, "window": 262144, "session": "s-1"})
        + js(REQUEST, {"id": 20, "op": "run.start", "run": "r-0000000000ab", "argv": ["sh"], "env": ["TERM=xterm"],
                       "cwd": "/workspace", "stdin": 9, "stdout": 7, "stderr": 8, "cgroup": False, "pty": [24, 80]})
        + js(REQUEST, {"id": 21, "op": "run.resize", "run": "r-0000000000ab", "rows": 50, "cols": 132}),
    # Malformed.
    "bad-zero-length": b"\x00\x00\x00\x00",
    "bad-oversized": b"\x00\x00\x10\x01" + b"\x30" * 8,
    "bad-type": frame(0x99, b"{}"),
    "bad-json": frame(RESPONSE, b'{"id":1,"ok":tru'),
    "bad-wrong-type": frame(RESPONSE, b'{"id":"1","ok":true}'),
    "bad-missing-key": frame(RESPONSE, b'{"id":1}'),
    "bad-duplicate-key": frame(RESPONSE, b'{"id":1,"ok":true,"id":2}'),
    "bad-unknown-op": frame(REQUEST, b'{"id":1,"op":"run.exec"}'),
    "bad-nesting": frame(EVENT, b'{"x":' + b"[" * 40 + b"]" * 40 + b"}"),
    "bad-escapes": frame(EVENT, b'{"event":"harness.log","level":"info","message":"\\ud800\\u0000"}'),
    "bad-truncated": js(EVENT, {"event": "harness.log", "level": "info", "message": "cut"})[:-3],
    "bad-short-data": frame(DATA, b"\x00\x02"),
    "bad-pong": pong(12345),
    "bad-unknown-run": js(EVENT, {"event": "process.started", "run": "r-0000000000ff", "pid": 3}),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name in os.listdir(OUT):
        os.remove(os.path.join(OUT, name))
    for name, content in SEEDS.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(content)
    print(f"wrote {len(SEEDS)} seeds to {OUT}")


if __name__ == "__main__":
    main()
