#!/usr/bin/env python3
"""Scripted model provider: a real HTTP/1.1 server speaking the OpenAI and
Anthropic wire formats, for the model-gateway tests and benchmarks.

Python standard library only (http.server.ThreadingHTTPServer + json), one
file, no state on disk. Keep-alive is supported; bodies are sent with
Content-Length, streams with chunked transfer encoding, each SSE event
flushed as it is written (TCP_NODELAY is set).

Usage
-----
    python3 scripted_provider.py --port 0 [--host 127.0.0.1] [--script FILE.json]
                                 [--port-file PATH] [--verbose]

Binds, writes the actual port to --port-file (atomically: PATH.tmp then
rename) and prints `PORT <n>` on stdout (flushed), then serves until SIGTERM
or SIGINT and exits 0.

Auth (loose): if env SCRIPTED_PROVIDER_KEY is set, the OpenAI route
/v1/chat/completions requires `Authorization: Bearer <key>`; the Anthropic
route /v1/messages requires `x-api-key: <key>` OR `Authorization: Bearer <key>`
(the official anthropic SDK 2.x sends its api_key as a Bearer token, older
ones and curl examples use x-api-key); /v1/models accepts either. Otherwise
401 with a provider-format error body. Unset: anything goes. Tests that care
which header arrived should look at /_requests.

Endpoints
---------
  GET  /v1/models            model list (OpenAI list format; Anthropic's list
                             format when the request has `anthropic-version`)
  POST /v1/chat/completions  OpenAI chat completions, `"stream": true` gives SSE
                             `data: {chat.completion.chunk}` ... `data: [DONE]`;
                             with `stream_options.include_usage` a last chunk
                             with `choices: []` and `usage` (other chunks then
                             carry `"usage": null`, as the real API does)
  POST /v1/responses         OpenAI Responses API: a response object (output
                             message and function_call items, usage with
                             input_tokens/output_tokens); `"stream": true`
                             gives its SSE events, response.created ... deltas
                             ... response.completed (or response.incomplete at
                             the cap). Replies, markers and usage as for chat.
  POST /v1/embeddings        embeddings: one small vector per input (8 numbers,
                             or `dimensions`), usage prompt_tokens = words + 1
  POST /v1/messages          Anthropic messages; streaming gives message_start,
                             content_block_start, ping, content_block_delta...,
                             content_block_stop, message_delta, message_stop.
                             As in the real API, message_start carries the
                             input tokens and output_tokens 1 (or 0); the final
                             output count is in message_delta.usage.
  GET  /bytes?n=N            N bytes (application/octet-stream, Content-Length,
                             written in 64 KiB pieces; byte i is i % 256)
  GET|POST /echo             JSON {method, path, headers, body_length, body_sha256}
  GET  /health               200 "ok"
  GET  /_requests            JSON list of every request received so far (except
                             /_requests itself): {seq, method, path, headers,
                             body, body_length}. `headers` is a dict with
                             LOWER-CASED names (repeated headers joined by ", ");
                             `body` is the parsed JSON when the body is JSON,
                             else the text (first 64 KiB), else null. At most
                             10000 entries are kept (oldest dropped).
  POST /_reset               clears the record (and the script queue's position
                             is NOT touched; see /_script)
  POST /_script              replaces the script with the JSON body (format
                             below); an empty body or [] clears it
Bodies over 16 MiB are refused with 413. Unknown paths give 404.

Replies: markers
----------------
With no script (or when it is used up), the reply is chosen by markers in the
text of the LAST message of the request, and only if that message has role
"user" (text parts only; Anthropic tool_result blocks and OpenAI role "tool"
messages carry no markers). So an agent loop ends naturally: the first turn
says `[[tool:...]]`, the turn that sends the tool result gets a text reply.

  [[tool:NAME {json args}]]  reply with a tool call of NAME with those args
                             (args optional: `[[tool:NAME]]` means {}; several
                             markers give several parallel calls). OpenAI:
                             message.tool_calls [{id, type:function,
                             function:{name, arguments:"<json string>"}}],
                             finish_reason "tool_calls". Anthropic: tool_use
                             content block, stop_reason "tool_use". Streaming
                             splits the arguments JSON into several pieces.
  [[usage:IN,OUT]]           force the usage numbers exactly (no cap)
  [[words:N]]                the text reply is N words long (with a tool marker:
                             N words of text before the tool call)
  [[status:CODE]]            answer HTTP CODE with a provider-format JSON error
  [[delay:MS]]               sleep MS milliseconds between stream events
  [[abort:N]]                streaming only: drop the connection after N SSE
                             events, without the final chunk (upstream failure)

Default reply: text "Hello from scripted provider".

Usage (deterministic):
  input tokens  = whitespace-separated words in every text of the request's
                  messages (string contents, text parts, tool_result contents;
                  plus Anthropic's top-level `system`) + 10
  output tokens = words of the reply text + for each tool call the words of
                  "NAME ARGS_JSON" + 1
  If the request's max_completion_tokens (else max_tokens) is smaller than the
  output count, output = that limit; a pure text reply is then cut to limit-1
  words and finishes with "length" (OpenAI) / "max_tokens" (Anthropic).
  [[usage:IN,OUT]] or a script's "usage" overrides all of this.

Replies: script file (--script FILE.json or POST /_script)
---------------------------------------------------------
Either a JSON list of replies, or an object:
    {"replies": [REPLY, ...],
     "delay_ms": 0,      # default ms between stream events for every reply
     "loop": false}      # true: cycle through the replies forever
Each completion request (/v1/chat/completions or /v1/messages, one shared
queue) consumes the next REPLY in order; while one is available the request's
markers are ignored; when the list is used up (and loop is false) the markers
and default apply again. A REPLY is a string (the text) or an object, every
key optional:
    {"text": "Hi",                       # reply text (default: none if tool
                                         #  calls are given, else the default)
     "words": 50,                        # like [[words:N]]
     "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}],
     "usage": [12, 3],                   # or {"input": 12, "output": 3}
     "status": 429, "error": "slow down",# HTTP error reply instead
     "headers": {"x-should-retry": "false"},  # extra response headers
     "delay_ms": 5,                      # like [[delay:MS]]
     "abort_after": 3}                   # like [[abort:N]]

Note for SDK users: the openai/anthropic SDKs retry 408/409/429/5xx twice by
default; use max_retries=0, or a script reply with
"headers": {"x-should-retry": "false"}, for one request per error.
"""

import argparse
import hashlib
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MAX_BODY = 16 * 1024 * 1024
MAX_RECORDS = 10000
MAX_RECORDED_TEXT = 64 * 1024
BYTES_PIECE = 64 * 1024
MAX_STREAM_PIECES = 512
DEFAULT_TEXT = "Hello from scripted provider"
VOCAB = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet "
         "kilo lima mike november oscar papa quebec romeo sierra tango").split()

MODELS = [
    ("gpt-4o-mini", "openai"),
    ("gpt-4o", "openai"),
    ("gpt-4.1-mini", "openai"),
    ("claude-3-5-haiku-latest", "anthropic"),
    ("claude-3-5-sonnet-latest", "anthropic"),
    ("claude-sonnet-4-0", "anthropic"),
]

ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error",
    403: "permission_error", 404: "not_found_error",
    413: "request_too_large", 429: "rate_limit_error",
    500: "api_error", 529: "overloaded_error",
}
OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None), 401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None), 404: ("invalid_request_error", "not_found"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("requests", "rate_limit_exceeded"), 500: ("server_error", None),
}


class HTTPError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------
# Shared state: request record, script queue, id counter.

class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.records = []
        self.seq = 0
        self.ids = 0
        self.replies = []
        self.next_reply = 0
        self.loop = False
        self.delay_ms = 0

    def record(self, entry):
        with self.lock:
            self.seq += 1
            entry["seq"] = self.seq
            self.records.append(entry)
            if len(self.records) > MAX_RECORDS:
                del self.records[: len(self.records) - MAX_RECORDS]

    def snapshot(self):
        with self.lock:
            return list(self.records)

    def reset(self):
        with self.lock:
            self.records = []

    def new_id(self, prefix):
        with self.lock:
            self.ids += 1
            n = self.ids
        return "%s%024x" % (prefix, n)

    def load_script(self, script):
        if script is None or script == "":
            script = []
        if isinstance(script, list):
            script = {"replies": script}
        if not isinstance(script, dict) or not isinstance(script.get("replies", []), list):
            raise HTTPError(400, "script must be a list of replies or {\"replies\": [...]}")
        replies = [normalise_reply(r) for r in script.get("replies", [])]
        with self.lock:
            self.replies = replies
            self.next_reply = 0
            self.loop = bool(script.get("loop", False))
            self.delay_ms = int(script.get("delay_ms", 0) or 0)

    def take_reply(self):
        """The next scripted reply, or None when there is none left."""
        with self.lock:
            if not self.replies:
                return None, self.delay_ms
            if self.next_reply >= len(self.replies):
                if not self.loop:
                    return None, self.delay_ms
                self.next_reply = 0
            reply = self.replies[self.next_reply]
            self.next_reply += 1
            return dict(reply), self.delay_ms


STATE = State()
VERBOSE = False


def normalise_reply(r):
    if isinstance(r, str):
        return {"text": r}
    if not isinstance(r, dict):
        raise HTTPError(400, "a script reply must be a string or an object")
    out = {}
    if "text" in r:
        out["text"] = str(r["text"]) if r["text"] is not None else None
    if "words" in r:
        out["words"] = int(r["words"])
    calls = []
    for c in r.get("tool_calls") or []:
        if not isinstance(c, dict) or not isinstance(c.get("name"), str):
            raise HTTPError(400, "tool_calls entries need a string name")
        args = c.get("arguments", {})
        if isinstance(args, str):
            args = json.loads(args) if args.strip() else {}
        calls.append({"name": c["name"], "arguments": args})
    out["tool_calls"] = calls
    u = r.get("usage")
    if isinstance(u, list) and len(u) == 2:
        out["usage"] = (int(u[0]), int(u[1]))
    elif isinstance(u, dict):
        out["usage"] = (int(u.get("input", u.get("input_tokens", u.get("prompt_tokens", 0)))),
                        int(u.get("output", u.get("output_tokens", u.get("completion_tokens", 0)))))
    if r.get("status") is not None:
        out["status"] = int(r["status"])
    if r.get("error") is not None:
        out["error"] = str(r["error"])
    if isinstance(r.get("headers"), dict):
        out["headers"] = {str(k): str(v) for k, v in r["headers"].items()}
    if r.get("delay_ms") is not None:
        out["delay_ms"] = int(r["delay_ms"])
    if r.get("abort_after") is not None:
        out["abort_after"] = int(r["abort_after"])
    return out


# --------------------------------------------------------------------------
# Reading requests: texts, words, markers.

def texts_of(content):
    """Every text in a message content (string, parts, tool results)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    out = []
    if isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    out.append(part["text"])
                if part.get("type") == "tool_result":
                    out.extend(texts_of(part.get("content")))
    elif isinstance(content, dict) and isinstance(content.get("text"), str):
        out.append(content["text"])
    return out


def count_words(texts):
    return sum(len(t.split()) for t in texts)


def input_words(body):
    texts = []
    if "system" in body:  # Anthropic top-level system prompt
        texts.extend(texts_of(body.get("system")))
    for m in body.get("messages") or []:
        if isinstance(m, dict):
            texts.extend(texts_of(m.get("content")))
    return count_words(texts)


def last_user_text(body):
    """Marker text: the last message's text parts, if it is a user message."""
    msgs = body.get("messages") or []
    if not msgs or not isinstance(msgs[-1], dict) or msgs[-1].get("role") != "user":
        return ""
    content = msgs[-1].get("content")
    if isinstance(content, str):
        return content
    parts = []
    for p in content if isinstance(content, list) else []:
        if isinstance(p, dict) and p.get("type", "text") == "text" and isinstance(p.get("text"), str):
            parts.append(p["text"])
        elif isinstance(p, str):
            parts.append(p)
    return "\n".join(parts)


TOOL_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
DECODER = json.JSONDecoder()


def parse_markers(text):
    reply = {"tool_calls": []}
    i = 0
    while True:
        i = text.find("[[tool:", i)
        if i < 0:
            break
        j = i + len("[[tool:")
        m = TOOL_NAME.match(text, j)
        if not m:
            raise HTTPError(400, "bad [[tool:NAME {args}]] marker: no name")
        name, j = m.group(0), m.end()
        while j < len(text) and text[j].isspace():
            j += 1
        args = {}
        if not text.startswith("]]", j):
            try:
                args, j = DECODER.raw_decode(text, j)
            except ValueError as e:
                raise HTTPError(400, "bad [[tool:%s ...]] marker: args are not JSON: %s" % (name, e))
            while j < len(text) and text[j].isspace():
                j += 1
            if not text.startswith("]]", j):
                raise HTTPError(400, "bad [[tool:%s ...]] marker: missing ]]" % name)
        reply["tool_calls"].append({"name": name, "arguments": args})
        i = j + 2
    m = re.search(r"\[\[usage:\s*(\d+)\s*,\s*(\d+)\s*\]\]", text)
    if m:
        reply["usage"] = (int(m.group(1)), int(m.group(2)))
    for key, field in (("words", "words"), ("status", "status"),
                       ("delay", "delay_ms"), ("abort", "abort_after")):
        m = re.search(r"\[\[" + key + r":\s*(\d+)\s*\]\]", text)
        if m:
            reply[field] = int(m.group(1))
    return reply


def plan_reply(body):
    """Decide the reply for a completion request: a dict with text,
    tool_calls, usage (in, out), finish ('stop'|'length'|'tool_calls'),
    status/error/headers, delay_ms, abort_after."""
    reply, default_delay = STATE.take_reply()
    if reply is None:
        reply = parse_markers(last_user_text(body))
    reply.setdefault("tool_calls", [])
    reply.setdefault("delay_ms", default_delay)
    if "words" in reply:
        n = max(0, reply["words"])
        reply["text"] = " ".join(VOCAB[k % len(VOCAB)] for k in range(n))
    elif "text" not in reply:
        reply["text"] = None if reply["tool_calls"] else DEFAULT_TEXT
    finish = "tool_calls" if reply["tool_calls"] else "stop"
    if "usage" in reply:
        usage = reply["usage"]
    else:
        inp = input_words(body) + 10
        text_words = len((reply["text"] or "").split())
        out = text_words + 1
        for c in reply["tool_calls"]:
            out += len(("%s %s" % (c["name"], json.dumps(c["arguments"]))).split())
        limit = body.get("max_completion_tokens")
        if limit is None:
            limit = body.get("max_tokens")
        if isinstance(limit, int) and not isinstance(limit, bool) and 0 <= limit < out:
            out = limit
            if not reply["tool_calls"]:
                keep = max(limit - 1, 0)
                reply["text"] = " ".join((reply["text"] or "").split()[:keep])
                finish = "length"
        usage = (inp, out)
    reply["usage"] = usage
    reply["finish"] = finish
    return reply


def split_pieces(s):
    """Split text into stream pieces: one word (with its leading space) per
    piece, grouped so that there are at most MAX_STREAM_PIECES pieces."""
    if not s:
        return []
    words = re.findall(r"\s*\S+\s*?", s)
    rest = s[sum(len(w) for w in words):]
    if rest:
        words.append(rest)
    group = max(1, -(-len(words) // MAX_STREAM_PIECES))
    return ["".join(words[k:k + group]) for k in range(0, len(words), group)]


def split_json(s):
    """Split a JSON string into a few arbitrary pieces (at least 2 if possible)."""
    if len(s) <= 1:
        return [s]
    n = min(max(2, len(s) // 8), MAX_STREAM_PIECES)
    size = -(-len(s) // n)
    return [s[k:k + size] for k in range(0, len(s), size)]


# --------------------------------------------------------------------------
# HTTP handler.

class Aborted(Exception):
    """A scripted stream abort: drop the connection without finishing."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Socket timeout: an idle keep-alive connection is dropped after this.
    timeout = 120
    server_version = "ScriptedProvider/1.0"
    sys_version = ""

    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, fmt, *args):
        if VERBOSE:
            sys.stderr.write("scripted_provider: %s - %s\n" % (self.address_string(), fmt % args))

    # ---- plumbing -------------------------------------------------------

    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            data = bytearray()
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise HTTPError(400, "truncated chunked body")
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise HTTPError(400, "bad chunk size")
                if size == 0:
                    while True:  # trailers
                        t = self.rfile.readline(8192)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    return bytes(data)
                if len(data) + size > MAX_BODY:
                    self.close_connection = True
                    raise HTTPError(413, "request body larger than %d bytes" % MAX_BODY)
                chunk = self.rfile.read(size)
                if len(chunk) != size:
                    raise HTTPError(400, "truncated chunk")
                data += chunk
                self.rfile.readline(16)  # CRLF after the chunk
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            n = int(length)
        except ValueError:
            self.close_connection = True
            raise HTTPError(400, "bad Content-Length")
        if n < 0:
            self.close_connection = True
            raise HTTPError(400, "bad Content-Length")
        if n > MAX_BODY:
            self.close_connection = True
            raise HTTPError(413, "request body larger than %d bytes" % MAX_BODY)
        data = self.rfile.read(n)
        if len(data) != n:
            self.close_connection = True
            raise HTTPError(400, "truncated body")
        return data

    def header_dict(self):
        d = {}
        for k, v in self.headers.items():
            k = k.lower()
            d[k] = d[k] + ", " + v if k in d else v
        return d

    def send_bytes(self, status, body, ctype, extra=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def send_json(self, status, obj, extra=None):
        self.send_bytes(status, json.dumps(obj).encode(), "application/json", extra)

    def send_error_json(self, status, message, flavour, extra=None):
        if flavour == "anthropic":
            obj = {"type": "error",
                   "error": {"type": ANTHROPIC_ERROR_TYPES.get(status, "api_error"), "message": message}}
            extra = dict(extra or {})
            extra.setdefault("request-id", STATE.new_id("req_"))
        else:
            etype, code = OPENAI_ERROR_TYPES.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
            obj = {"error": {"message": message, "type": etype, "param": None, "code": code}}
        self.send_json(status, obj, extra)

    # Streaming: chunked on HTTP/1.1, raw-until-close on HTTP/1.0.
    def start_stream(self, extra=None):
        self.chunked = self.request_version != "HTTP/1.0"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if self.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.close_connection = True
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()
        self.events_sent = 0

    def write_event(self, text):
        if self.abort_after is not None and self.events_sent >= self.abort_after:
            raise Aborted()
        if self.events_sent and self.delay_ms > 0:
            time.sleep(self.delay_ms / 1000.0)
        data = text.encode()
        if self.chunked:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.wfile.write(data)
        self.wfile.flush()
        self.events_sent += 1

    def end_stream(self):
        if self.chunked:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # ---- dispatch -------------------------------------------------------

    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def do_HEAD(self):
        self.dispatch()

    def dispatch(self):
        # The handler lives as long as the (keep-alive) connection: reset
        # the per-request stream settings.
        self.delay_ms, self.abort_after, self.events_sent, self.chunked = 0, None, 0, False
        url = urlsplit(self.path)
        path = url.path
        flavour = "anthropic" if path.startswith("/v1/messages") else "openai"
        try:
            body = self.read_body()
        except HTTPError as e:
            self.close_connection = True
            STATE.record({"method": self.command, "path": self.path,
                          "headers": self.header_dict(), "body": None,
                          "body_length": None, "error": e.status})
            try:
                self.send_error_json(e.status, e.message, flavour)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        parsed = None
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        if path != "/_requests":
            if parsed is not None:
                rec_body = parsed
            elif body and len(body) <= MAX_RECORDED_TEXT:
                try:
                    rec_body = body.decode("utf-8")
                except UnicodeDecodeError:
                    rec_body = None
            else:
                rec_body = None
            STATE.record({"method": self.command, "path": self.path,
                          "headers": self.header_dict(), "body": rec_body,
                          "body_length": len(body)})
        try:
            self.route(url, path, body, parsed, flavour)
        except HTTPError as e:
            self.send_error_json(e.status, e.message, flavour)
        except Aborted:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def route(self, url, path, body, parsed, flavour):
        m = self.command
        if path == "/health" and m in ("GET", "HEAD"):
            return self.send_bytes(200, b"ok", "text/plain")
        if path == "/_requests" and m == "GET":
            return self.send_json(200, STATE.snapshot())
        if path == "/_reset" and m == "POST":
            STATE.reset()
            return self.send_json(200, {"ok": True})
        if path == "/_script" and m in ("POST", "PUT"):
            if body and parsed is None:
                raise HTTPError(400, "script body is not JSON")
            STATE.load_script(parsed)
            return self.send_json(200, {"ok": True, "replies": len(STATE.replies)})
        if path == "/echo" and m in ("GET", "POST", "PUT"):
            return self.send_json(200, {
                "method": m, "path": self.path, "headers": self.header_dict(),
                "body_length": len(body), "body_sha256": hashlib.sha256(body).hexdigest()})
        if path == "/bytes" and m in ("GET", "HEAD"):
            return self.send_bytes_stream(url)
        if path == "/v1/models" and m == "GET":
            self.check_auth("either")
            return self.models()
        if path == "/v1/chat/completions" and m == "POST":
            self.check_auth("openai")
            return self.chat_completions(parsed)
        if path == "/v1/messages" and m == "POST":
            self.check_auth("anthropic")
            return self.messages(parsed)
        if path == "/v1/responses" and m == "POST":
            self.check_auth("openai")
            return self.responses_api(parsed)
        if path == "/v1/embeddings" and m == "POST":
            self.check_auth("openai")
            return self.embeddings(parsed)
        raise HTTPError(404, "no route for %s %s" % (m, path))

    def check_auth(self, kind):
        key = os.environ.get("SCRIPTED_PROVIDER_KEY")
        if not key:
            return
        bearer = self.headers.get("Authorization") == "Bearer " + key
        xkey = self.headers.get("x-api-key") == key
        # Anthropic accepts either header: its API takes both, and recent
        # official anthropic SDKs (2.x) send the api_key as a Bearer token.
        ok = bearer if kind == "openai" else (bearer or xkey)
        if not ok:
            raise HTTPError(401, "invalid or missing API key (%s)" % (
                "x-api-key or Authorization: Bearer" if kind != "openai" else "Authorization: Bearer"))

    # ---- simple routes --------------------------------------------------

    def send_bytes_stream(self, url):
        q = parse_qs(url.query)
        try:
            n = int(q.get("n", ["0"])[0])
        except ValueError:
            raise HTTPError(400, "n must be an integer")
        if n < 0:
            raise HTTPError(400, "n must be >= 0")
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(n))
        self.end_headers()
        if self.command == "HEAD":
            return
        piece = bytes(range(256)) * (BYTES_PIECE // 256)
        left = n
        while left > 0:
            k = min(left, BYTES_PIECE)
            self.wfile.write(piece[:k] if k < BYTES_PIECE else piece)
            left -= k
        self.wfile.flush()

    def models(self):
        now = int(time.time())
        if "anthropic-version" in self.headers:
            data = [{"type": "model", "id": mid, "display_name": mid,
                     "created_at": "2024-10-22T00:00:00Z"} for mid, _ in MODELS]
            return self.send_json(200, {"data": data, "has_more": False,
                                        "first_id": data[0]["id"], "last_id": data[-1]["id"]})
        data = [{"id": mid, "object": "model", "created": now, "owned_by": owner}
                for mid, owner in MODELS]
        return self.send_json(200, {"object": "list", "data": data})

    # ---- OpenAI ---------------------------------------------------------

    @staticmethod
    def responses_as_chat(req):
        """A Responses API request as the chat form plan_reply reads: its
        instructions and input items as messages (text parts of any type),
        its max_output_tokens as the cap."""
        msgs = []
        if isinstance(req.get("instructions"), str):
            msgs.append({"role": "system", "content": req["instructions"]})
        items = req.get("input")
        if isinstance(items, str):
            items = [{"role": "user", "content": items}]
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict):
                continue
            if item.get("type") == "function_call_output":
                msgs.append({"role": "tool", "content": str(item.get("output", ""))})
            elif "role" in item:
                c = item.get("content")
                text = c if isinstance(c, str) else "\n".join(
                    p["text"] for p in (c or []) if isinstance(p, dict) and isinstance(p.get("text"), str))
                msgs.append({"role": item["role"], "content": text})
        out = {"messages": msgs}
        if "max_output_tokens" in req:
            out["max_tokens"] = req["max_output_tokens"]
        return out

    def responses_api(self, req):
        """OpenAI Responses API: a response object, or its SSE events
        (response.created ... output_text.delta ... response.completed)."""
        if not isinstance(req, dict) or not isinstance(req.get("model"), str):
            raise HTTPError(400, "body must be a JSON object with a model")
        reply = plan_reply(self.responses_as_chat(req))
        if reply.get("status"):
            return self.send_error_json(reply["status"], reply.get("error") or "scripted error %d" % reply["status"],
                                        "openai", reply.get("headers"))
        rid = STATE.new_id("resp_")
        model = req["model"]
        inp, out = reply["usage"]
        message_id = STATE.new_id("msg_")
        output = []
        if reply["text"]:
            output.append({"type": "message", "id": message_id, "status": "completed", "role": "assistant",
                           "content": [{"type": "output_text", "text": reply["text"], "annotations": []}]})
        for c in reply["tool_calls"]:
            output.append({"type": "function_call", "id": STATE.new_id("fc_"), "call_id": STATE.new_id("call_"),
                           "name": c["name"], "arguments": json.dumps(c["arguments"]), "status": "completed"})
        incomplete = reply["finish"] == "length"

        def response(status, with_output, usage):
            return {"id": rid, "object": "response", "created_at": int(time.time()), "status": status,
                    "model": model, "output": output if with_output else [], "parallel_tool_calls": True,
                    "tool_choice": "auto", "tools": req.get("tools") or [],
                    "incomplete_details": {"reason": "max_output_tokens"} if incomplete and with_output else None,
                    "usage": {"input_tokens": inp, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": out,
                              "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": inp + out} if usage else None}

        final = "incomplete" if incomplete else "completed"
        extra = {"x-request-id": STATE.new_id("req_")}
        extra.update(reply.get("headers") or {})
        if not req.get("stream"):
            return self.send_json(200, response(final, True, True), extra)
        self.delay_ms = reply.get("delay_ms") or 0
        self.abort_after = reply.get("abort_after")
        seq = [0]

        def event(kind, **fields):
            fields["type"] = kind
            fields["sequence_number"] = seq[0]
            seq[0] += 1
            self.write_event("event: %s\ndata: %s\n\n" % (kind, json.dumps(fields)))

        self.start_stream(extra)
        event("response.created", response=response("in_progress", False, False))
        event("response.in_progress", response=response("in_progress", False, False))
        for index, item in enumerate(output):
            if item["type"] == "message":
                event("response.output_item.added", output_index=index,
                      item=dict(item, status="in_progress", content=[]))
                part = {"type": "output_text", "text": "", "annotations": []}
                event("response.content_part.added", item_id=message_id, output_index=index, content_index=0, part=part)
                for piece in split_pieces(reply["text"]):
                    event("response.output_text.delta", item_id=message_id, output_index=index, content_index=0,
                          delta=piece, logprobs=[])
                event("response.output_text.done", item_id=message_id, output_index=index, content_index=0,
                      text=reply["text"], logprobs=[])
                event("response.content_part.done", item_id=message_id, output_index=index, content_index=0,
                      part=item["content"][0])
            else:
                event("response.output_item.added", output_index=index, item=dict(item, arguments="", status="in_progress"))
                for piece in split_json(item["arguments"]):
                    event("response.function_call_arguments.delta", item_id=item["id"], output_index=index, delta=piece)
                event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                      arguments=item["arguments"], name=item["name"])
            event("response.output_item.done", output_index=index, item=item)
        event("response." + final, response=response(final, True, True))
        self.end_stream()

    def embeddings(self, req):
        if not isinstance(req, dict) or "input" not in req:
            raise HTTPError(400, "body must be a JSON object with an input")
        items = req["input"] if isinstance(req["input"], list) else [req["input"]]
        words = sum(len(i.split()) if isinstance(i, str) else 1 for i in items)
        dims = req.get("dimensions") if isinstance(req.get("dimensions"), int) else 8
        data = [{"object": "embedding", "index": k, "embedding": [round(0.001 * (k + 1) * (d + 1), 6) for d in range(dims)]}
                for k in range(len(items))]
        return self.send_json(200, {"object": "list", "data": data, "model": req.get("model") or "text-embedding-3-small",
                                    "usage": {"prompt_tokens": words + 1, "total_tokens": words + 1}},
                              {"x-request-id": STATE.new_id("req_")})

    def chat_completions(self, req):
        if not isinstance(req, dict) or not isinstance(req.get("messages"), list):
            raise HTTPError(400, "body must be a JSON object with a messages list")
        reply = plan_reply(req)
        if reply.get("status"):
            return self.send_error_json(reply["status"], reply.get("error") or "scripted error %d" % reply["status"],
                                        "openai", reply.get("headers"))
        model = req.get("model") or "gpt-4o-mini"
        cid = STATE.new_id("chatcmpl-")
        created = int(time.time())
        inp, out = reply["usage"]
        usage = {"prompt_tokens": inp, "completion_tokens": out, "total_tokens": inp + out}
        calls = [{"id": STATE.new_id("call_"), "type": "function",
                  "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}}
                 for c in reply["tool_calls"]]
        extra = {"x-request-id": STATE.new_id("req_")}
        extra.update(reply.get("headers") or {})
        if not req.get("stream"):
            message = {"role": "assistant", "content": reply["text"], "refusal": None}
            if calls:
                message["tool_calls"] = calls
            return self.send_json(200, {
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "system_fingerprint": "fp_scripted",
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": reply["finish"]}],
                "usage": usage}, extra)

        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        self.delay_ms = reply.get("delay_ms") or 0
        self.abort_after = reply.get("abort_after")

        def chunk(delta, finish=None):
            obj = {"id": cid, "object": "chat.completion.chunk", "created": created,
                   "model": model, "system_fingerprint": "fp_scripted",
                   "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                "finish_reason": finish}]}
            if include_usage:
                obj["usage"] = None
            self.write_event("data: %s\n\n" % json.dumps(obj))

        self.start_stream(extra)
        chunk({"role": "assistant", "content": "" if reply["text"] is not None or not calls else None,
               "refusal": None})
        for piece in split_pieces(reply["text"] or ""):
            chunk({"content": piece})
        for i, c in enumerate(calls):
            chunk({"tool_calls": [{"index": i, "id": c["id"], "type": "function",
                                   "function": {"name": c["function"]["name"], "arguments": ""}}]})
            for piece in split_json(c["function"]["arguments"]):
                chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
        chunk({}, reply["finish"])
        if include_usage:
            self.write_event("data: %s\n\n" % json.dumps({
                "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": "fp_scripted", "choices": [], "usage": usage}))
        self.write_event("data: [DONE]\n\n")
        self.end_stream()

    # ---- Anthropic ------------------------------------------------------

    def messages(self, req):
        if not isinstance(req, dict) or not isinstance(req.get("messages"), list):
            raise HTTPError(400, "body must be a JSON object with a messages list")
        reply = plan_reply(req)
        if reply.get("status"):
            return self.send_error_json(reply["status"], reply.get("error") or "scripted error %d" % reply["status"],
                                        "anthropic", reply.get("headers"))
        model = req.get("model") or "claude-3-5-haiku-latest"
        mid = STATE.new_id("msg_")
        inp, out = reply["usage"]
        stop = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}[reply["finish"]]
        blocks = []
        if reply["text"] is not None and (reply["text"] or not reply["tool_calls"]):
            blocks.append({"type": "text", "text": reply["text"]})
        for c in reply["tool_calls"]:
            blocks.append({"type": "tool_use", "id": STATE.new_id("toolu_"),
                           "name": c["name"], "input": c["arguments"]})
        extra = {"request-id": STATE.new_id("req_")}
        extra.update(reply.get("headers") or {})
        usage = {"input_tokens": inp, "output_tokens": out,
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        if not req.get("stream"):
            return self.send_json(200, {
                "id": mid, "type": "message", "role": "assistant", "model": model,
                "content": blocks, "stop_reason": stop, "stop_sequence": None,
                "usage": usage}, extra)

        self.delay_ms = reply.get("delay_ms") or 0
        self.abort_after = reply.get("abort_after")

        def event(name, obj):
            self.write_event("event: %s\ndata: %s\n\n" % (name, json.dumps(obj)))

        self.start_stream(extra)
        start_usage = dict(usage, output_tokens=min(1, out))
        event("message_start", {"type": "message_start", "message": {
            "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": start_usage}})
        for idx, b in enumerate(blocks):
            if b["type"] == "text":
                event("content_block_start", {"type": "content_block_start", "index": idx,
                                              "content_block": {"type": "text", "text": ""}})
                if idx == 0:
                    event("ping", {"type": "ping"})
                for piece in split_pieces(b["text"]):
                    event("content_block_delta", {"type": "content_block_delta", "index": idx,
                                                  "delta": {"type": "text_delta", "text": piece}})
            else:
                event("content_block_start", {"type": "content_block_start", "index": idx,
                                              "content_block": {"type": "tool_use", "id": b["id"],
                                                                "name": b["name"], "input": {}}})
                if idx == 0:
                    event("ping", {"type": "ping"})
                for piece in [""] + split_json(json.dumps(b["input"])):
                    event("content_block_delta", {"type": "content_block_delta", "index": idx,
                                                  "delta": {"type": "input_json_delta", "partial_json": piece}})
            event("content_block_stop", {"type": "content_block_stop", "index": idx})
        event("message_delta", {"type": "message_delta",
                                "delta": {"stop_reason": stop, "stop_sequence": None},
                                "usage": {"output_tokens": out}})
        event("message_stop", {"type": "message_stop"})
        self.end_stream()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def main():
    global VERBOSE
    ap = argparse.ArgumentParser(description="Scripted OpenAI/Anthropic provider for tests.")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--script", help="JSON file of scripted replies (see the docstring)")
    ap.add_argument("--port-file", help="write the bound port here (atomically)")
    ap.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = ap.parse_args()
    VERBOSE = args.verbose

    if args.script:
        with open(args.script, "rb") as f:
            try:
                STATE.load_script(json.load(f))
            except HTTPError as e:
                sys.exit("scripted_provider: bad script %s: %s" % (args.script, e.message))

    if ":" in args.host:
        Server.address_family = socket.AF_INET6
    server = Server((args.host, args.port), Handler)
    port = server.server_address[1]

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    # Ends with the process that started it: a test process that crashed
    # left providers behind holding its output pipe, and the test runner
    # waited for that pipe's end until the CI's time limit.
    parent = os.getppid()

    def orphaned():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=orphaned, daemon=True).start()

    if args.port_file:
        tmp = "%s.tmp.%d" % (args.port_file, os.getpid())
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)
    sys.stdout.write("PORT %d\n" % port)
    sys.stdout.flush()

    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
