#!/usr/bin/env python3
"""A soak of `levain serve`: many short runs across many sessions, with
kill -9 / restart cycles of the supervisor in the middle (issue 10).

Starts `levain serve` on a socket and state directory of its own, opens
--sessions sessions, and lets --concurrency client threads submit --runs
runs (`POST /v1/sessions/S/runs` with `"wait": true` and an idempotency
key each), spread round-robin over the sessions. Every run appends its key
to /workspace/ledger of its session, so executions can be counted from
the host; the mix is 6/10 plain appends (succeeded, 0), 3/10 appends then
`echo N` (succeeded, 0) and 1/10 appends then `exit 3` (failed, 3).

--cycles times, evenly spaced over the runs, the supervisor process is
killed with SIGKILL (not its children: its own cgroup sentinel, and the
recovery at the next start, must leave nothing), its sentinel is waited
for, what is left is counted, and the supervisor is started again with the
same config and state; its `interrupted` sessions are reopened, and the
clients resubmit every key they had in flight (the same key must give the
same run, never a second execution).

At the end the sessions are closed and the supervisor stopped with
SIGTERM; then what each client was told (run id, status, exit status) is
compared with the session log (`levain runs list --state DIR --json`), and
the ledgers are counted. Printed: runs/s, p50/p99 of submit->answer, lost
runs, disagreements, double executions, leftover cgroups and processes,
and the runs that ended with status `error` by message (the findings).
Exits 1 when lost runs, disagreements, double or missing executions, or
leftovers are not zero (2 when the soak could not be carried out).

    benchmarks/soak.py [--runs 50000] [--sessions 100] [--cycles 10] [--concurrency 16]
                       [--levain .build/release/levain] [--json /tmp/levain-bench-soak.json]
    benchmarks/soak.py --runs 2000 --sessions 10 --cycles 2      # a small one while developing

Needs root (like `levain serve`). Talks only over the supervisor's Unix
socket; kills only the supervisor it started (and, at the end, processes
left in the cgroups of its own sessions); removes its state directory and
any cgroups of its own sessions that were left behind (after counting them).
"""
import argparse
import collections
import glob
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

from bench_support import ROOT, UnixHTTP, api, start_serve

SESSION_RE = re.compile(r"^s-[0-9a-f]{12}$")


class TimedUnixHTTP(UnixHTTP):
    """bench_support's Unix-socket connection, with a socket timeout."""

    def __init__(self, path, timeout):
        super().__init__(path)
        self.io_timeout = timeout

    def connect(self):
        super().connect()
        self.sock.settimeout(self.io_timeout)


def command(i, key):
    """Run i's shell command and the (status, exit_status) it should end with."""
    line = f"echo {key} >> /workspace/ledger"
    kind = i % 10
    if kind < 6:
        return line, ("succeeded", 0)
    if kind < 9:
        return f"{line}; echo {i}", ("succeeded", 0)
    return f"{line}; exit 3", ("failed", 3)


def percentile(xs, q):
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def read(path, limit=1 << 20):
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode(errors="replace")
    except OSError:
        return None


def workspace_file(state, session, name):
    """A file of a session's workspace: a host directory, or (with a
    workspace_size) an ext4 image read with debugfs without mounting it."""
    base = os.path.join(state, "workspaces", session)
    if os.path.isdir(base):
        return read(os.path.join(base, name), 1 << 30)
    if os.path.exists(base + ".img"):
        r = subprocess.run(["/sbin/debugfs", "-R", "cat /" + name, base + ".img"],
                           capture_output=True, timeout=120)
        if r.returncode == 0 and b"File not found" not in r.stderr:
            return r.stdout.decode(errors="replace")
    return None


class Machine:
    """Where Levain's cgroups are, and which processes and cgroups are this soak's."""

    def __init__(self, token):
        self.token = token  # the work directory's unique name

    @staticmethod
    def levain_parents():
        """Every `levain` parent cgroup directory (real paths, deduplicated):
        <mount>/levain of each cgroup (v1) and cgroup2 mount, and the globs of the brief."""
        found = set()
        for line in (read("/proc/self/mountinfo") or "").splitlines():
            f = line.split()
            if "-" not in f:
                continue
            d = f.index("-")
            if d + 1 < len(f) and f[d + 1] in ("cgroup", "cgroup2"):
                found.add(os.path.join(f[4], "levain"))
        found.update(glob.glob("/sys/fs/cgroup/*/levain") + glob.glob("/sys/fs/cgroup/levain"))
        return sorted({os.path.realpath(p) for p in found if os.path.isdir(p)})

    def cgroups(self, sessions):
        """The cgroup directories under <parent>/<session> for our sessions
        (session and run cgroups), per parent: {parent: [dirs]}."""
        out = {}
        for parent in self.levain_parents():
            dirs = []
            for sid in sessions:
                top = os.path.join(parent, sid)
                if os.path.isdir(top):
                    for d, _, _ in os.walk(top):
                        dirs.append(d)
            if dirs:
                out[parent] = dirs
        return out

    def processes(self, sessions):
        """Processes that are this soak's supervisor's (a command line naming
        our work directory: the supervisor, its sentinel), or its jails' (a
        cgroup of one of our sessions, or a mount of our work directory), and
        other levain-harness processes or processes in other levain cgroups
        (not ours; shown for information). Zombies are left out."""
        ours, others = [], []
        me = os.getpid()
        try:
            my_mnt = os.readlink("/proc/self/ns/mnt")
        except OSError:
            my_mnt = None
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == me:
                continue
            pid = int(name)
            status = read(f"/proc/{pid}/status", 4096) or ""
            if "\nState:\tZ" in status or status == "":
                continue
            comm = (read(f"/proc/{pid}/comm", 256) or "").strip()
            cmdline = (read(f"/proc/{pid}/cmdline") or "").replace("\0", " ").strip()
            cg = read(f"/proc/{pid}/cgroup") or ""
            levain_cg = [l.split(":", 2)[2] for l in cg.splitlines() if l.count(":") >= 2 and l.split(":", 2)[2].startswith("/levain/")]
            in_ours = any(p.split("/")[2] in sessions for p in levain_cg if len(p.split("/")) > 2)
            why = None
            if self.token in cmdline:
                why = "supervisor command line"
            elif in_ours:
                why = "cgroup " + levain_cg[0]
            elif self.other_mount_ns(pid, my_mnt) and self.token in (read(f"/proc/{pid}/mountinfo") or ""):
                why = "mounts the work directory"
            row = {"pid": pid, "comm": comm, "cmdline": cmdline[:200], "why": why, "cgroups": levain_cg[:1]}
            if why:
                ours.append(row)
            elif comm == "levain-harness" or levain_cg:
                others.append(row)
        return ours, others

    @staticmethod
    def other_mount_ns(pid, mine):
        """A process in another mount namespace than ours (a jail's): only
        there does a mount of the work directory say the process is a jail's."""
        try:
            return os.readlink(f"/proc/{pid}/ns/mnt") != mine
        except OSError:
            return False

    def mounts(self):
        """Mount points in our own mount namespace under the work directory."""
        out = []
        for line in (read("/proc/self/mountinfo") or "").splitlines():
            f = line.split()
            if len(f) > 4 and self.token in f[4]:
                out.append(f[4])
        return out

    @staticmethod
    def remove_cgroups(dirs_by_parent):
        """Kills what is in each directory and removes them, leaves first; (removed, failed)."""
        removed, failed = 0, []
        for dirs in dirs_by_parent.values():
            for d in sorted(dirs, key=lambda p: -p.count("/")):
                for _ in range(100):
                    for line in (read(os.path.join(d, "cgroup.procs")) or "").split():
                        try:
                            os.kill(int(line), signal.SIGKILL)
                        except (OSError, ValueError):
                            pass
                    try:
                        os.rmdir(d)
                        removed += 1
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.02)
                else:
                    failed.append(d)
        return removed, failed


def normalize(msg, work):
    """An error message with the ids, counters and our paths taken out, to count by."""
    msg = (msg or "").replace(work, "<work>")
    msg = re.sub(r"\bs-[0-9a-f]{12}\b", "s-ID", msg)
    msg = re.sub(r"\br-[0-9a-f]{12}\b", "r-ID", msg)
    msg = re.sub(r"\brun-\d+\b", "run-N", msg)
    msg = re.sub(r"\bsoak-\d+\b", "soak-N", msg)
    msg = re.sub(r"\b\d{4,}\b", "N", msg)
    return msg[:300]


class Soak:
    def __init__(self, a, work, env):
        self.a, self.work, self.env = a, work, env
        self.machine = Machine(os.path.basename(work))
        self.lock = threading.Lock()
        self.serve_up = threading.Event()
        self.stop = threading.Event()
        self.generation = 0
        self.next_index = 0
        self.answered = 0
        self.last_progress = time.monotonic()
        self.records = {}
        self.latencies = []
        self.sessions = []
        self.transport = collections.Counter()
        self.http_errors = collections.Counter()
        self.http_examples = {}
        self.not_final = 0
        self.cycles = []
        self.downtime = 0.0
        self.serve = None
        self.sock = None
        self.extra = ""
        if a.supervisor_concurrency:
            self.extra += f"concurrency = {a.supervisor_concurrency}\n"
        if a.sessions > 200:
            self.extra += f"max_sessions = {a.sessions + 56}\n"

    # -- the supervisor --------------------------------------------------

    def start(self, label):
        t0 = time.monotonic()
        if os.path.exists(os.path.join(self.work, "serve.log")):
            os.rename(os.path.join(self.work, "serve.log"), os.path.join(self.work, f"serve.log.{label}"))
        self.serve, self.sock = start_serve(self.a.levain, self.work, self.extra, self.env)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.serve.poll() is not None:
                raise SystemExit(f"levain serve exited with {self.serve.returncode} at start ({label}); see {self.work}/serve.log:\n"
                                 + (read(os.path.join(self.work, "serve.log")) or "")[-2000:])
            try:
                if api(self.sock, "GET", "/v1/health")[0] == 200:
                    return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"levain serve did not answer /v1/health within 180 s ({label})")

    def wait_supervisor_gone(self, timeout):
        """Waits until nothing with our work directory on its command line is
        left (the supervisor's sentinel, after a kill -9); seconds waited."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            ours, _ = self.machine.processes(set(self.sessions))
            if not any(p["why"] == "supervisor command line" for p in ours):
                break
            time.sleep(0.05)
        return time.monotonic() - t0

    def leftovers(self, sessions):
        cg = self.machine.cgroups(sessions)
        ours, others = self.machine.processes(sessions)
        return cg, ours, others

    def kill_cycle(self, n):
        with self.lock:
            self.generation += 1
            at = self.answered
        self.serve_up.clear()
        t_kill = time.monotonic()
        os.kill(self.serve.pid, signal.SIGKILL)
        self.serve.wait(timeout=30)
        sentinel_s = self.wait_supervisor_gone(30)
        cg, procs, _ = self.leftovers(set(self.sessions))
        mounts = self.machine.mounts()
        start_s = self.start(f"cycle{n}")
        reopened, reopen_errors = self.reopen_interrupted()
        self.serve_up.set()
        down = time.monotonic() - t_kill
        self.downtime += down
        row = {"cycle": n, "at_answered": at, "sentinel_gone_s": round(sentinel_s, 3),
               "leftover_cgroups": sum(len(v) for v in cg.values()),
               "leftover_session_cgroups": sum(1 for v in cg.values() for d in v if SESSION_RE.match(os.path.basename(d))),
               "leftover_processes": len(procs), "leftover_process_examples": procs[:5],
               "leftover_mounts": len(mounts), "restart_s": round(start_s, 3), "reopened": reopened, "reopen_errors": reopen_errors,
               "down_s": round(down, 3)}
        self.cycles.append(row)
        print(f"  kill -9 #{n} at {at} answered: sentinel gone after {row['sentinel_gone_s']} s; left then: "
              f"{row['leftover_cgroups']} cgroups ({row['leftover_session_cgroups']} session ones), {row['leftover_processes']} processes, "
              f"{row['leftover_mounts']} mounts; "
              f"restarted in {row['restart_s']} s; reopened {reopened} interrupted sessions"
              + (f", reopen errors {dict(reopen_errors)}" if reopen_errors else "") + f"; down {row['down_s']} s", flush=True)

    def reopen_interrupted(self):
        status, body = api(self.sock, "GET", "/v1/sessions?status=interrupted")
        if status != 200:
            return 0, {f"list {status}": 1}
        ids = [s["id"] for s in body.get("sessions", []) if s["id"] in set(self.sessions)]
        errors = collections.Counter()
        done = [0]
        lock = threading.Lock()

        def worker(chunk):
            for sid in chunk:
                try:
                    c = TimedUnixHTTP(self.sock, 120)
                    st, b = api(self.sock, "POST", f"/v1/sessions/{sid}/reopen", conn=c)
                    c.close()
                except (OSError, http.client.HTTPException) as e:
                    st, b = None, type(e).__name__
                with lock:
                    if st == 200:
                        done[0] += 1
                    else:
                        msg = b.get("error", {}).get("message") if isinstance(b, dict) else str(b)
                        errors[f"{st}: {normalize(msg, self.work)}"] += 1

        threads = [threading.Thread(target=worker, args=(ids[k::4],), daemon=True) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        return done[0], dict(errors)

    # -- the clients -----------------------------------------------------

    def take(self):
        with self.lock:
            if self.next_index >= self.a.runs or self.stop.is_set():
                return None
            self.next_index += 1
            return self.next_index - 1

    def client(self):
        conn = [None]
        while True:
            i = self.take()
            if i is None:
                break
            self.one(i, conn)
        if conn[0]:
            conn[0].close()

    def one(self, i, conn):
        key = f"soak-{i}"
        session = self.sessions[i % len(self.sessions)]
        cmd, expect = command(i, key)
        rec = {"key": key, "session": session, "expect": list(expect), "attempts": 0, "answers": []}
        with self.lock:
            self.records[key] = rec
        body = {"command": cmd, "idempotency_key": key, "wait": True, "timeout": "60s"}
        deadline = self.t_start + self.a.time_limit
        while rec["attempts"] < self.a.max_attempts and time.monotonic() < deadline and not self.stop.is_set():
            if not self.serve_up.wait(timeout=1):
                continue
            gen = self.generation
            if conn[0] is not None and conn[0].generation != gen:
                # A keep-alive connection to a supervisor killed since.
                conn[0].close()
                conn[0] = None
            rec["attempts"] += 1
            t0 = time.monotonic()
            try:
                if conn[0] is None:
                    conn[0] = TimedUnixHTTP(self.sock, self.a.request_timeout)
                    conn[0].generation = gen
                status, answer = api(self.sock, "POST", f"/v1/sessions/{session}/runs", body, conn=conn[0])
            except (OSError, http.client.HTTPException) as e:
                if conn[0]:
                    conn[0].close()
                conn[0] = None
                during = "while the supervisor was up" if gen == self.generation and self.serve_up.is_set() else "around a kill -9"
                with self.lock:
                    self.transport[f"{type(e).__name__} {during}"] += 1
                rec["answers"].append(f"transport {type(e).__name__}")
                time.sleep(0.05)
                continue
            dt = time.monotonic() - t0
            if status in (200, 201) and isinstance(answer, dict) and answer.get("id"):
                if answer.get("exit_status") is None:
                    # `wait: true` answered a run in flight: wait for it (bounded).
                    with self.lock:
                        self.not_final += 1
                    rec["answers"].append(f"{status} {answer.get('status')} (not final)")
                    try:
                        st, answer = api(self.sock, "POST", f"/v1/runs/{answer['id']}/wait?timeout=60", conn=conn[0])
                    except (OSError, http.client.HTTPException):
                        conn[0] = None
                        continue
                    if st != 200 or answer.get("exit_status") is None:
                        continue
                rec.update(run=answer["id"], status=answer.get("status"), exit_status=answer.get("exit_status"),
                           exit_code=answer.get("exit_code"), error=answer.get("error"), http=status,
                           latency_ms=round(dt * 1000, 3))
                rec["answers"].append(f"{status} {answer.get('status')}")
                with self.lock:
                    self.latencies.append(dt * 1000)
                    self.answered += 1
                    self.last_progress = time.monotonic()
                return
            msg = answer.get("error", {}).get("message") if isinstance(answer, dict) else str(answer)[:200]
            label = f"{status} {normalize(msg, self.work)}"
            rec["answers"].append(f"{status} {msg}")
            with self.lock:
                self.http_errors[label] += 1
                self.http_examples.setdefault(label, f"{key}: {msg}")
            time.sleep(min(2.0, 0.1 * rec["attempts"]))

    # -- the soak ----------------------------------------------------------

    def open_sessions(self):
        for n in range(self.a.sessions):
            for attempt in range(3):
                status, s = api(self.sock, "POST", "/v1/sessions", {"policy": "default", "tenant": "soak", "labels": {"bench": "soak"}})
                if status == 201:
                    self.sessions.append(s["id"])
                    break
                print(f"  session {n}: {status} {s}", flush=True)
                time.sleep(0.5)
            else:
                raise SystemExit(f"could not open session {n}")

    def run(self):
        a = self.a
        self.start("first")
        t0 = time.monotonic()
        self.open_sessions()
        print(f"  opened {len(self.sessions)} sessions in {time.monotonic() - t0:.1f} s", flush=True)
        self.serve_up.set()
        self.t_start = time.monotonic()
        threads = [threading.Thread(target=self.client, daemon=True) for _ in range(a.concurrency)]
        for t in threads:
            t.start()
        thresholds = [a.runs * (c + 1) // (a.cycles + 1) for c in range(a.cycles)]
        stalled = False
        for n, th in enumerate(thresholds, 1):
            while self.answered < th and not self.stop.is_set():
                if not any(t.is_alive() for t in threads):
                    break
                if time.monotonic() - self.last_progress > a.stall or time.monotonic() - self.t_start > a.time_limit:
                    stalled = True
                    self.stop.set()
                    break
                time.sleep(0.05)
            if self.stop.is_set() or not any(t.is_alive() for t in threads):
                break
            self.kill_cycle(n)
        while any(t.is_alive() for t in threads):
            if time.monotonic() - self.last_progress > a.stall or time.monotonic() - self.t_start > a.time_limit:
                stalled = True
                self.stop.set()
                break
            time.sleep(0.1)
        for t in threads:
            t.join(timeout=a.request_timeout + 5)
        self.t_end = time.monotonic()
        self.stalled = stalled

    def finish(self):
        """Closes the sessions, stops the supervisor with SIGTERM; the closing figures."""
        close_errors = collections.Counter()
        if self.serve and self.serve.poll() is None:
            for sid in self.sessions:
                try:
                    c = TimedUnixHTTP(self.sock, 60)
                    st, b = api(self.sock, "DELETE", f"/v1/sessions/{sid}", conn=c)
                    c.close()
                except (OSError, http.client.HTTPException) as e:
                    st, b = None, type(e).__name__
                if st != 200:
                    msg = b.get("error", {}).get("message") if isinstance(b, dict) else str(b)
                    close_errors[f"{st}: {normalize(msg, self.work)}"] += 1
            self.serve.send_signal(signal.SIGTERM)
            try:
                self.serve.wait(timeout=60)
                term = f"exited {self.serve.returncode}"
            except subprocess.TimeoutExpired:
                self.serve.kill()
                self.serve.wait(timeout=30)
                term = "did not exit within 60 s of SIGTERM (killed)"
        else:
            term = "was not running"
        sentinel_s = self.wait_supervisor_gone(30)
        return dict(close_errors), term, sentinel_s


def ctl(levain, env, *args):
    r = subprocess.run([levain, *args], env=env, capture_output=True, text=True, timeout=600)
    return r.returncode, r.stdout, r.stderr


def analyse(soak, state, env):
    a, work = soak.a, soak.work
    rc, out, err = ctl(a.levain, env, "runs", "list", "--state", state, "--json")
    if rc != 0:
        raise SystemExit(f"levain runs list failed ({rc}): {err}")
    log_runs = json.loads(out)
    rc, out, err = ctl(a.levain, env, "sessions", "list", "--state", state, "--json")
    log_sessions = json.loads(out) if rc == 0 else []
    if isinstance(log_sessions, dict):
        log_sessions = log_sessions.get("sessions", [])
    rc_verify, out, err = ctl(a.levain, env, "log", "verify", "--state", state, "--json")
    try:
        verify = json.loads(out)
    except ValueError:
        verify = {"ok": False, "report": (out + err)[-500:]}

    by_key = collections.defaultdict(list)
    for r in log_runs:
        if r.get("idempotency_key"):
            by_key[(r["session"], r["idempotency_key"])].append(r)
    ledger = collections.Counter()
    for s in log_sessions:
        text = workspace_file(state, s["id"], "ledger") or ""
        ledger.update(l for l in text.split("\n") if l)

    told = {k: r for k, r in soak.records.items() if "status" in r}
    unanswered = [k for k, r in soak.records.items() if "status" not in r]
    lost, disagreements, several = [], [], []
    for k, r in soak.records.items():
        runs = by_key.get((r["session"], k), [])
        if len(runs) > 1:
            several.append(k)
        if not runs:
            lost.append(k)
            continue
        if k in told:
            l = runs[0]
            mine = (r["run"], r["status"], r["exit_status"])
            theirs = (l["id"], l["status"], l.get("exit_status"))
            if mine != theirs:
                disagreements.append({"key": k, "client": mine, "log": theirs})
    double = {k: n for k, n in ledger.items() if n > 1}
    unknown_lines = {k: n for k, n in ledger.items() if k not in soak.records}
    # A run the client was told ran to its end must have its one ledger line.
    missing = [k for k, r in told.items() if tuple(r["expect"]) == (r["status"], r["exit_status"]) and ledger.get(k, 0) == 0]
    interrupted = [k for k, r in told.items() if r["status"] == "interrupted"]
    interrupted_ran = sum(1 for k in interrupted if ledger.get(k, 0) > 0)

    statuses = collections.Counter(r["status"] for r in told.values())
    unexpected = collections.Counter(f"{tuple(r['expect'])} -> ({r['status']}, {r['exit_status']})"
                                     for r in told.values() if tuple(r["expect"]) != (r["status"], r["exit_status"]))
    errors = collections.Counter(normalize(r.get("error"), work) for r in told.values() if r["status"] == "error")
    error_examples = {}
    for r in told.values():
        if r["status"] == "error":
            error_examples.setdefault(normalize(r.get("error"), work), r.get("error"))
    log_statuses = collections.Counter(r["status"] for r in log_runs if r["session"] in set(soak.sessions))
    log_errors = collections.Counter(normalize(r.get("error"), work) for r in log_runs
                                     if r["session"] in set(soak.sessions) and r["status"] == "error")
    resubmitted = [r for r in soak.records.values() if r["attempts"] > 1]
    return {
        "log_runs": len(log_runs), "log_sessions": len(log_sessions),
        "log_verify_ok": bool(verify.get("ok")), "log_verify": {k: v for k, v in verify.items() if k != "report"},
        "told": len(told), "unanswered": len(unanswered), "unanswered_examples": [soak.records[k] for k in unanswered[:5]],
        "lost": len(lost), "lost_examples": lost[:10],
        "disagreements": len(disagreements), "disagreement_examples": disagreements[:10],
        "keys_with_several_runs": len(several),
        "double_executions": len(double), "double_examples": dict(list(double.items())[:10]),
        "missing_executions": len(missing), "missing_examples": missing[:10],
        "unknown_ledger_lines": len(unknown_lines),
        "interrupted": len(interrupted), "interrupted_that_ran": interrupted_ran,
        "executions_counted": sum(ledger.values()),
        "statuses": dict(statuses), "unexpected_outcomes": dict(unexpected),
        "error_runs": sum(errors.values()), "errors_by_message": dict(errors.most_common()), "error_examples": error_examples,
        "log_statuses": dict(log_statuses), "log_errors_by_message": dict(log_errors.most_common()),
        "resubmitted_keys": len(resubmitted),
        "resubmit_answers": dict(collections.Counter(r["http"] for r in resubmitted if "http" in r)),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=50000)
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--cycles", type=int, default=10, help="kill -9/restart cycles of the supervisor")
    ap.add_argument("--concurrency", type=int, default=16, help="client threads")
    ap.add_argument("--levain", default=os.path.join(ROOT, ".build/release/levain"))
    ap.add_argument("--supervisor-concurrency", type=int, default=0, help="supervisor.concurrency (default: the config's default, 8)")
    ap.add_argument("--request-timeout", type=float, default=120, help="seconds one HTTP request may take")
    ap.add_argument("--max-attempts", type=int, default=50, help="submissions of one key at most")
    ap.add_argument("--stall", type=float, default=300, help="give up after this many seconds without an answered run")
    ap.add_argument("--time-limit", type=float, default=4 * 3600, help="give up after this many seconds of submitting")
    ap.add_argument("--json", default="/tmp/levain-bench-soak.json")
    ap.add_argument("--keep-state", action="store_true", help="keep the work directory (the log, the ledgers)")
    a = ap.parse_args()
    if a.runs < 1 or a.sessions < 1 or a.cycles < 0 or a.concurrency < 1:
        ap.error("--runs, --sessions and --concurrency must be positive, --cycles not negative")
    if os.geteuid() != 0:
        raise SystemExit("soak.py needs root (levain serve does)")
    a.levain = os.path.abspath(a.levain)
    for name in ("levain", "levain-ctl", "levain-harness"):
        path = os.path.join(os.path.dirname(a.levain), name)
        if not os.access(path, os.X_OK):
            print(f"soak.py: {path} is missing (levain execs levain-ctl, which finds levain-harness, beside it)", file=sys.stderr)
            sys.exit(2)

    work = tempfile.mkdtemp(prefix="levain-bench-soak-")
    state = os.path.join(work, "state")
    env = {k: v for k, v in os.environ.items() if k not in ("LEVAIN_CONNECT", "LEVAIN_TOKEN")}
    soak = Soak(a, work, env)
    print(f"soak: {a.runs} runs, {a.sessions} sessions, {a.cycles} kill -9 cycles, {a.concurrency} client threads; "
          f"{a.levain}; work {work}", flush=True)
    code = 2
    result = {}
    try:
        soak.run()
        close_errors, term, sentinel_s = soak.finish()
        # What is left once the supervisor is gone (the log names every
        # session it made, also any whose creation failed).
        all_sessions = set(soak.sessions)
        rc, out, _ = ctl(a.levain, env, "sessions", "list", "--state", state, "--json")
        if rc == 0:
            listed = json.loads(out)
            listed = listed.get("sessions", []) if isinstance(listed, dict) else listed
            all_sessions |= {s["id"] for s in listed}
        cg, procs, others = soak.leftovers(all_sessions)
        left_mounts = soak.machine.mounts()
        res = analyse(soak, state, env)
        wall = soak.t_end - soak.t_start
        lat = soak.latencies
        leftover_cgroups = sum(len(v) for v in cg.values())
        result = {
            "params": vars(a), "work": work,
            "wall_s": round(wall, 3), "answered": soak.answered,
            "runs_per_s": round(soak.answered / wall, 2) if wall else None,
            "runs_per_s_up": round(soak.answered / max(1e-9, wall - soak.downtime), 2),
            "latency_ms": {"p50": percentile(lat, 0.5), "p99": percentile(lat, 0.99), "max": max(lat) if lat else None, "n": len(lat)},
            "stalled": soak.stalled, "cycles": soak.cycles,
            "transport_errors": dict(soak.transport), "http_errors": dict(soak.http_errors.most_common()),
            "http_error_examples": soak.http_examples, "wait_answers_not_final": soak.not_final,
            "close_errors": close_errors, "sigterm": term, "sentinel_gone_s_at_end": round(sentinel_s, 3),
            "leftover_cgroups": leftover_cgroups,
            "leftover_cgroups_by_parent": {p: len(v) for p, v in cg.items()},
            "leftover_session_cgroups": sum(1 for v in cg.values() for d in v if SESSION_RE.match(os.path.basename(d))),
            "leftover_processes": len(procs), "leftover_process_examples": procs[:10],
            "other_levain_processes_not_ours": len(others), "leftover_mounts": len(left_mounts),
            **res,
        }
        r = result
        L = r["latency_ms"]
        fmt = lambda x: "-" if x is None else f"{x:.2f}"
        print(f"\nanswered {r['answered']} of {a.runs} runs in {r['wall_s']} s: {r['runs_per_s']} runs/s "
              f"({r['runs_per_s_up']} runs/s not counting {soak.downtime:.1f} s of restarts)")
        print(f"submit->answer (wait: true): p50 {fmt(L['p50'])} ms, p99 {fmt(L['p99'])} ms, max {fmt(L['max'])} ms ({L['n']} answers)")
        print(f"told: {r['statuses']}; unexpected outcomes: {r['unexpected_outcomes'] or 'none'}")
        print(f"interrupted runs: {r['interrupted']}, of which {r['interrupted_that_ran']} had run their command (ledger line present)")
        print(f"resubmitted keys: {r['resubmitted_keys']} (final answers to them by HTTP status: {r['resubmit_answers']}); "
              f"unanswered keys: {r['unanswered']}")
        print(f"transport errors: {r['transport_errors'] or 'none'}")
        print(f"HTTP errors (non-2xx answers to submissions): {sum(soak.http_errors.values())}")
        for label, n in soak.http_errors.most_common():
            print(f"  {n:6d}  {label}")
        print(f"log: {r['log_runs']} runs, {r['log_sessions']} sessions, verify {'ok' if r['log_verify_ok'] else 'FAILED'}; "
              f"log statuses {r['log_statuses']}")
        print(f"close: {close_errors or 'all closed'}; SIGTERM: supervisor {term}; sentinel gone {r['sentinel_gone_s_at_end']} s later")
        print(f"lost runs:                     {r['lost']}")
        print(f"disagreements client vs log:   {r['disagreements']}")
        print(f"double executions:             {r['double_executions']} (keys with several runs in the log: {r['keys_with_several_runs']})")
        print(f"finished runs without their one ledger line: {r['missing_executions']}")
        print(f"leftover cgroups:              {leftover_cgroups} ({r['leftover_session_cgroups']} session cgroups) {r['leftover_cgroups_by_parent'] or ''}")
        print(f"leftover processes:            {r['leftover_processes']}"
              + (f" (other levain processes on the machine, not ours: {r['other_levain_processes_not_ours']})" if others else ""))
        print(f"leftover mounts (under the work directory, in the host's namespace): {len(left_mounts)}")
        print(f"runs told status error:        {r['error_runs']}")
        for msg, n in r["errors_by_message"].items():
            print(f"  {n:6d}  {msg}")
        if r["log_errors_by_message"] != r["errors_by_message"]:
            print("runs with status error in the log, by message:")
            for msg, n in r["log_errors_by_message"].items():
                print(f"  {n:6d}  {msg}")
        for k in ("disagreement_examples", "lost_examples", "double_examples", "missing_examples", "leftover_process_examples"):
            if r[k]:
                print(f"{k}: {json.dumps(r[k])[:1500]}")
        bad = r["lost"] or r["disagreements"] or r["double_executions"] or r["missing_executions"] or leftover_cgroups or r["leftover_processes"] \
            or r["keys_with_several_runs"] or left_mounts
        code = 1 if bad else (2 if soak.stalled else 0)
        print("result:", "FAIL" if bad else ("INCOMPLETE (stalled or out of time)" if soak.stalled else "PASS"))
        # Leave the machine clean: what the soak's sessions left behind.
        if cg or procs:
            for p in procs:
                try:
                    os.kill(p["pid"], signal.SIGKILL)
                except OSError:
                    pass
            removed, failed = Machine.remove_cgroups(cg)
            result["cleanup"] = {"cgroups_removed": removed, "cgroups_not_removed": failed}
            print(f"cleanup: removed {removed} leftover cgroups of this soak" + (f"; could not remove {failed[:5]}" if failed else ""))
    finally:
        # After an error or ^C: stop our supervisor, then remove whatever of
        # our sessions is left (a no-op after a normal end, cleaned above).
        if soak.serve and soak.serve.poll() is None:
            soak.serve.kill()
            soak.serve.wait(timeout=30)
        soak.wait_supervisor_gone(30)
        cg, procs, _ = soak.leftovers(set(soak.sessions))
        if cg or procs:
            print(f"removing what this soak left: {sum(len(v) for v in cg.values())} cgroups, {len(procs)} processes")
            for p in procs:
                try:
                    os.kill(p["pid"], signal.SIGKILL)
                except OSError:
                    pass
            Machine.remove_cgroups(cg)
        if result:
            with open(a.json, "w") as f:
                json.dump({**result, "records": list(soak.records.values())}, f, indent=1, default=str)
            print(f"details: {a.json}")
        # Anything still mounted under the work directory (a jail's stage
        # after a kill -9) is unmounted before the directory goes.
        mounts = soak.machine.mounts()
        if mounts:
            print(f"mounts left under the work directory: {len(mounts)} (unmounted)")
            for m in sorted(mounts, key=len, reverse=True):
                subprocess.run(["umount", "-l", m], capture_output=True)
        if a.keep_state:
            print(f"kept {work}")
        else:
            subprocess.run(["rm", "-rf", "--one-file-system", work])
    sys.exit(code)


main()
