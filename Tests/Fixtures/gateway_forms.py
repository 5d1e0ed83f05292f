#!/usr/bin/env python3
"""Runs inside a jail: posts request bodies to the model gateway exactly as
written (text, so duplicate keys and number forms such as 1e6 or 3.5 reach
the gateway as an attacker would send them) and prints one JSON object, by
case name, of what came back.

Usage: gateway_forms.py CASES_JSON
  CASES_JSON: [{"name": "...", "api": "openai" | "anthropic", "body": "<text>"}]
Each result: {"status", "error" (x-levain-error), "denied" (x-levain-denied),
"message", "param", "usage" ([in, out] of a whole answer), "stream_usage"
(a stream carried a usage chunk), "broken" (the answer broke off)}.
"""
import http.client
import json
import os
import sys
import urllib.error
import urllib.request


def post(api, body):
    if api == "anthropic":
        url = os.environ["ANTHROPIC_BASE_URL"].rstrip("/") + "/v1/messages"
        headers = {"content-type": "application/json", "x-api-key": os.environ["ANTHROPIC_API_KEY"]}
    else:
        url = os.environ["OPENAI_BASE_URL"].rstrip("/") + "/chat/completions"
        headers = {"content-type": "application/json", "authorization": "Bearer " + os.environ["OPENAI_API_KEY"]}
    req = urllib.request.Request(url, data=body.encode(), method="POST", headers=headers)
    out = {}
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            out["status"] = r.status
            try:
                data = r.read()
            except http.client.IncompleteRead as e:
                data = e.partial
                out["broken"] = True
            headers = {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        out["status"] = e.code
        data = e.read()
        headers = {k.lower(): v for k, v in e.headers.items()}
    out["error"] = headers.get("x-levain-error")
    out["denied"] = headers.get("x-levain-denied")
    text = data.decode(errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict):
            out["message"] = error.get("message")
            out["param"] = error.get("param")
        usage = parsed.get("usage")
        if isinstance(usage, dict):
            if api == "anthropic":
                out["usage"] = [usage.get("input_tokens"), usage.get("output_tokens")]
            else:
                out["usage"] = [usage.get("prompt_tokens"), usage.get("completion_tokens")]
    elif out["status"] == 200:
        out["stream_usage"] = '"prompt_tokens"' in text or '"output_tokens"' in text
    return out


if __name__ == "__main__":
    results = {}
    for case in json.loads(sys.argv[1]):
        results[case["name"]] = post(case.get("api", "openai"), case["body"])
    print(json.dumps(results))
