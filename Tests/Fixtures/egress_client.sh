#!/bin/sh
# Runs inside a jail: egress through the proxy named by HTTP_PROXY, and the
# ways around it. Prints one "name=value" line per check.
# Usage: egress_client.sh PORT PYTHON   (PORT: the test server's port)
P=$1
PY=$2
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@"; }
connect_code() { curl -s -o /dev/null -w '%{http_connect}' --max-time 10 -p "$@"; }

echo "allowed=$(code http://allowed.test:$P/echo)"
echo "allowed_echo=$(curl -s --max-time 10 http://allowed.test:$P/echo | tr -d '\n')"
echo "denied=$(code http://denied.test:$P/echo)"
echo "denied_header=$(curl -s -D - -o /dev/null --max-time 10 http://denied.test:$P/echo | tr -d '\r' | grep -i '^x-levain-denied:' | cut -d' ' -f2)"
echo "unlisted=$(code http://other.test:$P/echo)"
# (NO_PROXY names localhost so that clients reach the gateway directly;
# here the point is what the proxy does with a name that is loopback.)
echo "loopback_name=$(NO_PROXY= no_proxy= code http://localhost:$P/echo)"
echo "metadata=$(code http://169.254.169.254/latest/meta-data/)"
echo "denied_port=$(connect_code https://allowed.test:8443/)"
echo "no_dns=$(connect_code https://nothing.invalid/)"
echo "tunnel_sha=$(curl -s --max-time 30 -p "http://allowed.test:$P/bytes?n=5000000" | sha256sum | cut -d' ' -f1)"
echo "expected_sha=$($PY -c 'import hashlib,sys; print(hashlib.sha256(bytes(i % 256 for i in range(5000000))).hexdigest())')"
# Around the proxy: no name service for the world, no route for addresses.
curl -s -o /dev/null --noproxy '*' --max-time 5 "http://allowed.test:$P/echo"; echo "direct_name=$?"
curl -s -o /dev/null --noproxy '*' --max-time 5 "http://1.1.1.1/"; echo "direct_address=$?"
$PY - "$P" <<'PYEOF'
import socket, sys, requests
port = sys.argv[1]
r = requests.get(f"http://allowed.test:{port}/bytes?n=1000000", timeout=10)
print(f"requests_allowed={r.status_code}:{len(r.content)}")
r = requests.get(f"http://denied.test:{port}/echo", timeout=10)
print(f"requests_denied={r.status_code}:{r.headers.get('x-levain-denied')}")
s = socket.create_connection(("127.0.0.1", 8791), timeout=10)
s.sendall(b"\x16\x03\x01\x02\x00garbage that is not HTTP\r\n\r\n")
print("garbage=" + s.recv(64).split(b"\r\n")[0].decode(errors="replace").replace(" ", "_"))
s.close()
PYEOF
