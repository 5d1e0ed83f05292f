"""Raw MCP tools/call requests against the in-jail endpoint ($LEVAIN_MCP_URL),
the way a hostile agent in the jail would make them: plain JSON-RPC over
HTTP POST, many at once. Standard library only (the host's python3).

  mcp_calls.py call TOOL ARGS_JSON [N]   N parallel calls; prints a JSON list
                                         of {"error", "text", "seconds"}
  mcp_calls.py attack STOPFILE ROUND_JSON
                                         repeats a round (a list of
                                         [TOOL, ARGS] called all at once)
                                         until STOPFILE exists; prints
                                         {"rounds", "calls", "seconds"}
  mcp_calls.py tree DIR DEPTH WIDTH      makes a tree of directories
                                         (WIDTH per level, a leaf.txt in each)
  mcp_calls.py --url URL ...             another endpoint path (the
                                         session's /mcp, say)
"""
import json
import os
import sys
import threading
import time
import urllib.request


URL = None


def call(tool, args, url=None, timeout=600):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": tool, "arguments": args}}).encode()
    req = urllib.request.Request(url or URL or os.environ["LEVAIN_MCP_URL"], data=body, method="POST", headers={
        "content-type": "application/json", "accept": "application/json, text/event-stream"})
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            answer = json.loads(r.read())
    except Exception as e:  # noqa: BLE001 - reported, not raised
        return {"error": True, "text": "client: %s" % e, "seconds": time.monotonic() - t0}
    result = answer.get("result") or {}
    content = result.get("content") or [{}]
    text = content[0].get("text", json.dumps(answer.get("error")))
    return {"error": bool(result.get("isError", "error" in answer)), "text": text, "seconds": time.monotonic() - t0}


def parallel(calls):
    results = [None] * len(calls)

    def one(i, tool, args):
        results[i] = call(tool, args)

    threads = [threading.Thread(target=one, args=(i, t, a)) for i, (t, a) in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def tree(root, depth, width):
    level = [root]
    for _ in range(depth):
        nxt = []
        for d in level:
            for i in range(width):
                sub = os.path.join(d, "d%d" % i)
                os.makedirs(sub, exist_ok=True)
                with open(os.path.join(sub, "leaf.txt"), "w") as f:
                    f.write("x\n")
                nxt.append(sub)
        level = nxt


def main():
    global URL
    if sys.argv[1] == "--url":
        URL = sys.argv[2]
        del sys.argv[1:3]
    cmd = sys.argv[1]
    if cmd == "call":
        n = int(sys.argv[4]) if len(sys.argv) > 4 else 1
        print(json.dumps(parallel([(sys.argv[2], json.loads(sys.argv[3]))] * n)))
    elif cmd == "attack":
        stop, round_ = sys.argv[2], json.loads(sys.argv[3])
        rounds = calls = 0
        t0 = time.monotonic()
        while not os.path.exists(stop):
            parallel(round_)
            rounds += 1
            calls += len(round_)
        print(json.dumps({"rounds": rounds, "calls": calls, "seconds": time.monotonic() - t0}))
    elif cmd == "tree":
        tree(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit("unknown command " + cmd)


main()
