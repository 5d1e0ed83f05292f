"""The workspace as a tar archive: GET|PUT /v1/sessions/{id}/archive against a
real `levain serve`, each a run of GNU tar inside the jail as the jail user."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import tarfile

import pytest

import levain
from levain import AsyncClient

from conftest import Supervisor


def tar_of(members: list[tuple[str, bytes | None, str]]) -> bytes:
    """A tar built member by member: (name, data, kind[:link]); kind is
    file, dir, sym:TARGET or hard:TARGET."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind.startswith("sym:"):
                info.type, info.linkname = tarfile.SYMTYPE, kind[4:]
            elif kind.startswith("hard:"):
                info.type, info.linkname = tarfile.LNKTYPE, kind[5:]
            else:
                info.size, info.mode = len(data or b""), 0o644
            t.addfile(info, io.BytesIO(data) if data is not None and info.type == tarfile.REGTYPE else None)
    return buf.getvalue()


def names(archive: bytes) -> list[str]:
    return sorted(m.name for m in tarfile.open(fileobj=io.BytesIO(archive)).getmembers())


def leftovers(session, root: str = "/workspace") -> str:
    return session.exec(f"ls -A {root} | grep levain-import || true").stdout


def test_workspace_export_and_import_between_sessions(client, session):
    session.files.write("src/app.py", "print('hi')\n")
    session.files.write("bin/run.sh", "#!/bin/sh\necho ran\n", mode=0o755)
    session.files.write("data/ünï code.bin", bytes(range(256)) * 4096)  # 1 MiB, binary
    session.exec("ln -s src/app.py link.py && mkdir -p empty/dir", check=True)
    archive = session.export_workspace()
    listed = names(archive)
    assert "./src/app.py" in listed and "./link.py" in listed and "./empty/dir" in listed
    # The export was a run of tar in the jail, in the log.
    tars = [r for r in client.list_runs(session=session.id) if r.request.get("argv", [""])[0] == "tar"]
    assert tars and tars[-1].status == "succeeded"
    other = client.create_session()
    try:
        assert other.import_workspace(archive) == len(archive)
        assert other.files.read_text("src/app.py") == "print('hi')\n"
        assert other.files.read("data/ünï code.bin") == bytes(range(256)) * 4096
        assert other.exec(["/workspace/bin/run.sh"]).stdout == "ran\n"
        assert other.files.stat("link.py").type == "symlink"
        assert other.files.stat("empty/dir").is_dir
        assert other.exec("stat -c %u src/app.py").stdout.strip() != "0"  # the jail user's
        assert leftovers(other) == ""  # the staging directory is gone
        # Into an existing tree: files replaced, others kept.
        other.files.write("src/app.py", "changed\n")
        other.files.write("keep.txt", "kept\n")
        other.import_workspace(archive)
        assert other.files.read_text("src/app.py") == "print('hi')\n"
        assert other.files.read_text("keep.txt") == "kept\n"
    finally:
        other.close()


def test_export_a_directory_with_excludes_and_import_into_a_new_one(session):
    session.exec("mkdir -p proj/node_modules/x proj/src /tmp/scratch && echo a > proj/src/a.py"
                 " && echo b > proj/node_modules/x/b.js && echo o > proj/src/a.o && echo t > /tmp/scratch/t",
                 check=True)
    archive = session.export_workspace("/workspace/proj", exclude=["node_modules", "./src/*.o"])
    assert names(archive) == [".", "./src", "./src/a.py"]
    assert names(session.export_workspace("/tmp/scratch")) == [".", "./t"]
    session.import_workspace(archive, "/workspace/copy/of/proj")  # made, parents too
    assert session.files.read_text("copy/of/proj/src/a.py") == "a\n"
    session.import_workspace(archive, "/tmp/elsewhere")
    assert session.exec("cat /tmp/elsewhere/src/a.py").stdout == "a\n"


def test_a_hostile_archive_is_refused_whole(session):
    good = ("ok.txt", b"fine", "file")
    for bad, why in [
        ([good, ("../escape.txt", b"x", "file")], "'..'"),
        ([good, ("out", None, "sym:/tmp"), ("out/through.txt", b"x", "file")], "Not a directory"),
        ([good, ("hard", None, "hard:/etc/passwd")], "Cannot hard link"),
    ]:
        with pytest.raises(levain.InvalidRequest) as e:
            session.import_workspace(tar_of(bad))
        assert "tar" in str(e.value) and why in str(e.value), str(e.value)
        # Nothing landed: not the good member, nothing outside, no staging.
        check = session.exec("ls -A /workspace; ls /escape.txt /tmp/through.txt 2>&1; true").stdout
        assert "ok.txt" not in check and "hard" not in check and "out" not in check.split("\n")[0], check
        assert "cannot access '/escape.txt'" in check and "cannot access '/tmp/through.txt'" in check, check
        assert leftovers(session) == ""
    # A leading "/" is stripped, as tar does: it lands beneath the workspace.
    session.import_workspace(tar_of([("/tmp/abs.txt", b"abs", "file")]))
    assert session.files.read_text("tmp/abs.txt") == "abs"
    assert session.exec("ls /tmp/abs.txt 2>&1 || true").stdout.startswith("ls: cannot access")
    # Control: the good member alone lands.
    session.import_workspace(tar_of([good]))
    assert session.files.read_text("ok.txt") == "fine"


def test_garbage_and_a_cut_archive_unpack_nothing(session):
    with pytest.raises(levain.InvalidRequest) as e:
        session.import_workspace(b"this is not a tar archive" * 100)
    assert "tar" in str(e.value)
    whole = tar_of([("a.txt", b"a" * 10000, "file"), ("b.txt", b"b" * 10000, "file")])
    with pytest.raises(levain.InvalidRequest):
        session.import_workspace(whole[:15000])  # cut inside b.txt
    assert session.exec("ls -A /workspace").stdout == ""
    session.import_workspace(whole)  # control
    assert session.files.read_text("b.txt") == "b" * 10000


def test_an_upload_that_breaks_off_unpacks_nothing(supervisor, session):
    # The first member whole, then the connection closes: tar would take
    # that as the end of a good archive; the supervisor ends it first.
    archive = tar_of([("first.txt", b"1" * 512, "file"), ("second.txt", b"2" * 100000, "file")])
    head = archive[:1024]  # the first member's header and data
    s = socket.socket(socket.AF_UNIX)
    s.connect(supervisor.socket)
    s.sendall(f"PUT /v1/sessions/{session.id}/archive HTTP/1.1\r\nHost: x\r\n"
              f"Content-Length: {len(archive)}\r\n\r\n".encode() + head)
    s.shutdown(socket.SHUT_WR)
    answer = s.recv(65536)
    s.close()
    assert b" 400 " in answer.split(b"\r\n")[0] and b"broke off" in answer, answer
    assert session.exec("ls -A /workspace").stdout == ""
    session.import_workspace(archive)  # control
    assert session.files.read_text("first.txt") == "1" * 512


def test_an_archive_tar_stops_reading_early_still_answers(session):
    # tar stops at the end-of-archive blocks; the rest of the upload has
    # nowhere to go once the run has exited, and must not hold the request.
    archive = tar_of([("early.txt", b"e", "file")]) + b"\x01" * (4 << 20)
    assert session.import_workspace(archive) == len(archive)
    assert session.files.read_text("early.txt") == "e"
    assert leftovers(session) == ""


def test_linking_into_place_can_fail_part_way_and_says_so(session):
    # The archive has a directory where the workspace has a file: tar
    # unpacks it fine, linking it over the file fails (cp's message, 409).
    session.files.write("clash", "a file\n")
    with pytest.raises(levain.Conflict) as e:
        session.import_workspace(tar_of([("clash", None, "dir"), ("clash/in.txt", b"i", "file")]))
    assert "clash" in str(e.value) and "exited 71" in str(e.value), str(e.value)
    assert session.files.read_text("clash") == "a file\n"
    assert leftovers(session) == ""
    # Control: into a directory of its own it lands.
    session.import_workspace(tar_of([("clash", None, "dir"), ("clash/in.txt", b"i", "file")]), "other")
    assert session.files.read_text("other/clash/in.txt") == "i"


def test_staging_left_by_a_killed_import_is_swept_and_never_exported(session):
    # What an import killed outright would leave: a staging directory with a
    # directory the jail user cannot write in it.
    session.exec("mkdir -p .levain-import.dead/ro && echo x > .levain-import.dead/ro/f && chmod 555 .levain-import.dead/ro"
                 " && mkdir .levain-import.fresh", check=True)
    assert all(".levain-import" not in n for n in names(session.export_workspace()))
    session.exec("touch -d '2 hours ago' .levain-import.dead", check=True)
    session.import_workspace(tar_of([("new.txt", b"n", "file")]))
    assert session.files.read_text("new.txt") == "n"
    # The hour-old one is gone; a recent one (an import under way) is kept.
    assert leftovers(session) == ".levain-import.fresh\n"


def test_archive_bad_input_has_clear_errors(session):
    session.files.write("plain.txt", "x")
    session.exec("ln -s /etc etc-link && mkdir locked && echo s > locked/secret && chmod 000 locked/secret", check=True)
    with pytest.raises(levain.InvalidRequest) as e:
        session.export_workspace("/etc")
    assert e.value.field == "path"
    with pytest.raises(levain.InvalidRequest):
        session.export_workspace("/workspace/../etc")
    with pytest.raises(levain.Conflict) as e:
        session.export_workspace("etc-link")  # a symlink is not followed, in or out
    assert "not a directory" in str(e.value)
    with pytest.raises(levain.NotFound):
        session.export_workspace("missing")
    with pytest.raises(levain.Conflict) as e:
        session.export_workspace("plain.txt")
    assert "not a directory" in str(e.value)
    with pytest.raises(levain.InvalidRequest) as e:
        session.export_workspace(exclude=["/abs"])
    assert e.value.field == "exclude"
    with pytest.raises(levain.Conflict) as e:
        session.export_workspace("locked")  # tar cannot read secret as the jail user
    assert "Permission denied" in str(e.value)
    assert names(session.export_workspace("locked", exclude=["secret"])) == ["."]  # control
    with pytest.raises(levain.InvalidRequest):
        session.import_workspace(tar_of([("x", b"x", "file")]), "/etc")
    with pytest.raises(levain.NotFound):
        levain.Session(session.client, "s-000000000000").export_workspace()


def test_archive_size_is_bounded_by_max_output(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("levain serve needs root")
    sv = Supervisor(tmp_path)
    sv.config.write_text(sv.config.read_text() + '[limits]\nmax_output = "64K"\n')
    sv.start()
    try:
        with levain.Client(f"unix:{sv.socket}") as c:
            s = c.create_session()
            try:
                s.files.write("big.bin", b"\x01" * 100_000)
                with pytest.raises(levain.TooLarge) as e:
                    s.export_workspace()
                assert "limits.max_output" in str(e.value)
                assert len(s.export_workspace(exclude=["big.bin"])) > 0  # control
                big = tar_of([("big.bin", b"\x02" * 100_000, "file")])
                with pytest.raises(levain.TooLarge):
                    s.import_workspace(big)  # declared length
                with pytest.raises(levain.TooLarge):
                    s.import_workspace(io.BytesIO(big))  # chunked, counted as it comes
                assert s.files.read("big.bin") == b"\x01" * 100_000  # untouched
                assert s.exec("ls -A /workspace").stdout == "big.bin\n"
            finally:
                s.close()
    finally:
        sv.stop()


def test_async_export_and_import(supervisor):
    async def main():
        async with AsyncClient(f"unix:{supervisor.socket}") as c:
            a = await c.create_session()
            b = await c.create_session()
            try:
                await a.files.write("x/y.txt", "async\n")
                archive = await a.export_workspace()
                assert "./x/y.txt" in names(archive)
                assert await b.import_workspace(archive) == len(archive)
                assert await b.files.read_text("x/y.txt") == "async\n"
                with pytest.raises(levain.InvalidRequest):
                    await b.import_workspace(tar_of([("../up", b"x", "file")]))
            finally:
                await a.close()
                await b.close()
    asyncio.run(main())


def test_the_archive_route_answers_tar_with_its_run(supervisor, session):
    import httpx2
    session.files.write("a.txt", "a")
    transport = httpx2.HTTPTransport(uds=supervisor.socket)
    with httpx2.Client(transport=transport, base_url="http://levain") as h:
        r = h.get(f"/v1/sessions/{session.id}/archive", params={"path": "/workspace"})
        assert r.status_code == 200 and r.headers["content-type"] == "application/x-tar"
        assert int(r.headers["content-length"]) == len(r.content)
        run = session.client.get_run(r.headers["x-levain-run"])
        assert run.status == "succeeded" and run.request["argv"][0] == "tar"
