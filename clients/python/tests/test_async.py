"""The asyncio client against a real `levain serve`."""

from __future__ import annotations

import asyncio

import pytest

import levain
from levain import AsyncClient


def run(coro):
    return asyncio.run(coro)


def test_async_sessions_exec_files_and_errors(supervisor):
    async def main():
        async with AsyncClient(f"unix:{supervisor.socket}") as c:
            assert (await c.health())["status"] == "ok"
            s = await c.create_session(labels={"suite": "python-async"})
            try:
                r = await s.exec("echo out; echo err >&2; exit 4")
                assert (r.status, r.exit_status, r.stdout, r.stderr) == ("failed", 4, "out\n", "err\n")
                assert (await s.exec(["cat"], stdin=b"\x00\xffbytes")).stdout_bytes == b"\x00\xffbytes"
                t = await s.exec("sleep 30", timeout=1)
                assert t.status == "timed_out"
                with pytest.raises(levain.CommandTimedOut):
                    t.check()

                assert await s.files.write("a/b.txt", "ünï\n") == len("ünï\n".encode())
                assert await s.files.read_text("a/b.txt") == "ünï\n"
                assert [e.name for e in await s.files.list("a")] == ["b.txt"]
                assert (await s.files.stat("a/b.txt")).size == len("ünï\n".encode())
                assert await s.files.exists("a/b.txt") and not await s.files.exists("a/none")
                with pytest.raises(levain.NotFound):
                    await s.files.read("a/none")
                await s.exec("chmod 000 a/b.txt", check=True)
                with pytest.raises(levain.PermissionDenied):
                    await s.files.read("a/b.txt")
                await s.files.remove("a", recursive=True)
                assert not await s.files.exists("a")

                ups = await s.files.upload([("x/1", "1"), ("../out", "no"), ("x/2", b"2")])
                assert [u.ok for u in ups] == [True, False, True]
                downs = await s.files.download(["x/1", "x/nope", "x/2"])
                assert [d.content for d in downs] == [b"1", None, b"2"]

                types = [e.type async for e in s.events()]
                assert types[0] == "session.opened" and "run.finished" in types
            finally:
                await s.close()
            with pytest.raises(levain.Conflict):
                await s.exec("true")
            with pytest.raises(levain.NotFound):
                await c.get_session("s-000000000000")

    run(main())


def test_async_five_in_parallel_streaming_and_stdin(supervisor):
    async def main():
        async with AsyncClient(f"unix:{supervisor.socket}") as c:
            async with await c.create_session() as s:
                results = await asyncio.gather(*(s.exec(f"sleep 0.3; echo {i}") for i in range(5)))
                assert [r.stdout for r in results] == [f"{i}\n" for i in range(5)]
                assert len({r.run_id for r in results}) == 5

                seen: list[bytes] = []

                async def on_stdout(chunk: bytes) -> None:
                    seen.append(chunk)
                    if b"first" in chunk and not await s.files.exists("go"):
                        await s.files.write("go", "1")

                r = await s.exec("echo first; while [ ! -e go ]; do sleep 0.02; done; echo second",
                                 timeout=30, on_stdout=on_stdout)
                assert r.ok and b"".join(seen) == b"first\nsecond\n"

                bg = await s.start(["wc", "-c"], stdin_stream=True)
                for _ in range(10):
                    await bg.send_stdin(b"x" * 1000)
                assert await bg.close_stdin() == 10000
                assert (await bg.wait()).status == "succeeded"
                assert (await bg.stdout()).strip() == b"10000"

                sleeper = await s.start("sleep 60")
                assert (await sleeper.cancel()).status == "cancelled"

    run(main())
