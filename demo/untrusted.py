"""An untrusted program, as an agent might write one.

It tries to get out of its jail and to starve the machine, then does some
real work. `make demo` runs it under Levain's default policy; every attempt
should be contained, and the real work should still succeed.
"""
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

results = []


def attempt(name, fn):
    try:
        outcome = fn()
    except Exception as e:  # noqa: BLE001 - we report whatever happened
        outcome = f"blocked: {type(e).__name__}: {e}"
    results.append((name, outcome))
    print(f"  {name:<38} {outcome}", flush=True)


def read_host_secret():
    with open("/etc/shadow") as f:
        return "READ the host's /etc/shadow: " + f.read(40)


def list_host_home():
    return "listed /root: " + ", ".join(os.listdir("/root")[:5])


def host_processes():
    pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    return f"sees {len(pids)} process(es) (pids {pids[:6]}): only its own jail"


def network_out():
    s = socket.create_connection(("1.1.1.1", 80), timeout=3)
    s.close()
    return "CONNECTED to 1.1.1.1:80"


def fork_bomb():
    code = (
        "import os,time\n"
        "n=0\n"
        "try:\n"
        "    while True:\n"
        "        if os.fork()==0:\n"
        "            os.closerange(0, 3); time.sleep(60); os._exit(0)\n"
        "        n+=1\n"
        "except OSError as e:\n"
        "    print(n, e.strerror, flush=True)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=20)
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    n, _, why = out.strip().partition(" ")
    time.sleep(0.2)
    return f"held: {n} forks, then {why!r}"


def memory_bomb():
    code = "b=[]\nwhile True: b.append(bytearray(32<<20))\n"
    p = subprocess.run([sys.executable, "-c", code], timeout=60)
    if p.returncode == -signal.SIGKILL:
        return "held: the OOM killer ended it (SIGKILL)"
    return f"exited {p.returncode}"


def mount_proc():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"proc", b"/tmp", b"proc", 0, None) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return "MOUNTED"


def real_work():
    data = b"levain" * 1_000_000
    digest = hashlib.sha256(data).hexdigest()
    primes = [n for n in range(2, 50_000) if all(n % d for d in range(2, int(n ** 0.5) + 1))]
    os.makedirs("/workspace/out", exist_ok=True)
    with open("/workspace/out/result.json", "w") as f:
        json.dump({"sha256": digest, "primes": len(primes), "largest": primes[-1]}, f)
    return f"ok: {len(primes)} primes, sha256 {digest[:12]}..., wrote /workspace/out/result.json"


print(f"untrusted.py running as uid {os.getuid()} on host {socket.gethostname()!r}", flush=True)
attempt("read the host's /etc/shadow", read_host_secret)
attempt("list the host's /root", list_host_home)
attempt("look at the host's processes", host_processes)
attempt("open a connection to 1.1.1.1:80", network_out)
attempt("mount something", mount_proc)
attempt("fork bomb", fork_bomb)
attempt("memory bomb", memory_bomb)
attempt("real work", real_work)
