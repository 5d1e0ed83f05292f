"""Runs on a pseudo-terminal: the run's stdin, stdout and stderr are a new
terminal in the jail (its controlling terminal), of the size asked for,
resizable while it runs."""

from __future__ import annotations

import time

import pytest

import levain


def test_a_pty_run_has_a_terminal_of_its_size(session):
    r = session.exec("tty; stty size; test -t 0 && test -t 1 && test -t 2 && echo all-tty; echo $TERM; echo to-stderr >&2",
                     pty=True)
    assert r.exit_status == 0, r
    out = r.stdout.replace("\r\n", "\n")
    assert out.startswith("/dev/pts/")
    assert "\n24 80\n" in out and "all-tty\n" in out and "xterm-256color\n" in out
    # Everything it writes comes on the terminal, stderr included.
    assert "to-stderr\n" in out and r.stderr == ""
    assert "50 132" in session.exec("stty size", pty=(50, 132)).stdout
    # Control: without pty there is no terminal.
    plain = session.exec("tty; test -t 1 && echo all-tty; true")
    assert "not a tty" in plain.stdout and "all-tty" not in plain.stdout and "/dev/pts" not in plain.stdout


def test_resize_and_input_while_it_runs(client, session):
    run = session.start("read line; stty size; echo got:$line", pty=(24, 80), stdin_stream=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            info = run.resize(30, 100)
            break
        except levain.APIError as e:  # 409 until the process runs
            assert e.status == 409, e
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.02)
    assert info.id == run.id
    run.send_stdin("hello\n")
    run.close_stdin()
    final = run.wait(timeout=30)
    assert final.exit_status == 0, final
    out = run.stdout().decode().replace("\r\n", "\n")
    assert "\n30 100\n" in out and "got:hello" in out
    assert "hello\n" in out.split("30 100")[0]  # the terminal echoed what was typed
    # A run that has ended cannot be resized; nor can a run without a terminal.
    with pytest.raises(levain.APIError) as ended:
        run.resize(10, 10)
    assert ended.value.status == 409
    plain = session.start("sleep 30")
    try:
        for _ in range(500):
            try:
                plain.resize(10, 10)
            except levain.APIError as e:
                assert e.status == 409
                if "no terminal" in e.message:
                    break
            time.sleep(0.01)
        else:
            pytest.fail("resizing a run without a terminal was not refused as such")
    finally:
        plain.cancel()


def test_bad_terminal_sizes_are_refused(session):
    for pty, field in (((0, 80), "pty.rows"), ((24, 0), "pty.cols"), ((24, 10_001), "pty.cols")):
        with pytest.raises(levain.APIError) as bad:
            session.exec("true", pty=pty)
        assert bad.value.status == 400 and bad.value.field == field, bad.value
    run = session.start("read x", pty=True, stdin_stream=True)
    try:
        with pytest.raises(levain.APIError) as bad:
            run.resize(0, 80)
        assert bad.value.status == 400 and bad.value.field == "rows"
    finally:
        run.cancel()
