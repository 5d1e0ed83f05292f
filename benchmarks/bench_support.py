"""What the Python benchmarks share: the control API over the Unix socket,
the scripted provider, `levain serve` with a config, and cleaning up."""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def api(sock, method, path, body=None, conn=None):
    """One request to the supervisor (a new connection unless `conn`); (status, JSON or text)."""
    c = conn or UnixHTTP(sock)
    c.request(method, path, json.dumps(body) if body is not None else None, {"content-type": "application/json"})
    r = c.getresponse()
    data = r.read()
    return r.status, (json.loads(data) if data and data[:1] in b"{[" else data.decode(errors="replace"))


def start_provider(work, env):
    """Tests/Fixtures/scripted_provider.py on loopback; (process, port)."""
    port_file = os.path.join(work, "port")
    provider = subprocess.Popen([sys.executable, os.path.join(ROOT, "Tests/Fixtures/scripted_provider.py"), "--port", "0",
                                 "--port-file", port_file], env=env, stdout=subprocess.DEVNULL)
    for _ in range(300):
        if os.path.exists(port_file):
            break
        time.sleep(0.02)
    return provider, int(open(port_file).read())


def start_serve(levain, work, extra_config, env):
    """`levain serve` with its socket and state in `work`, `extra_config`
    appended to its config; (process, socket path) once it answers."""
    sock = os.path.join(work, "sock")
    with open(os.path.join(work, "levain.toml"), "w") as f:
        f.write(f"""
[supervisor]
socket = "{sock}"
state = "{work}/state"
shutdown_grace = "2s"
""" + extra_config)
    serve = subprocess.Popen([levain, "serve", "--config", os.path.join(work, "levain.toml")], env=env,
                             stdout=open(os.path.join(work, "serve.log"), "w"), stderr=subprocess.STDOUT)
    for _ in range(600):
        try:
            if api(sock, "GET", "/v1/health")[0] == 200:
                break
        except OSError:
            time.sleep(0.05)
    return serve, sock


def stop(serve, provider, work):
    if serve:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
    if provider:
        provider.kill()
        provider.wait()
    if work:
        subprocess.run(["rm", "-rf", work])
