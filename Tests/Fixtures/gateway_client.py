#!/usr/bin/env python3
"""Runs inside a jail with the official openai and anthropic SDKs: talks to
the model gateway named by the environment (OPENAI_BASE_URL, ANTHROPIC_BASE_URL
and their placeholder keys) and prints one JSON object of what came back.

Usage: gateway_client.py sdk        -- both SDKs, streaming and not, tool calls
       gateway_client.py responses  -- the openai SDK's Responses API (streaming and not,
                                       a function tool, a hosted tool refused) and embeddings
       gateway_client.py budget N   -- N requests of [[usage:30,10]]; statuses
       gateway_client.py bad        -- malformed and refused requests, then one good
"""
import json
import os
import sys
import urllib.request
import urllib.error


def responses():
    import openai
    out = {}
    oc = openai.OpenAI(max_retries=0)
    r = oc.responses.create(model="gpt-4o-mini", input="say hello [[usage:21,7]]")
    out["text"] = r.output_text
    out["usage"] = [r.usage.input_tokens, r.usage.output_tokens]
    text, usage, types = "", None, []
    for e in oc.responses.create(model="gpt-4o-mini", input=[{"role": "user", "content": "stream please [[words:12]]"}],
                                 instructions="be brief", stream=True):
        types.append(e.type)
        if e.type == "response.output_text.delta":
            text += e.delta
        if e.type == "response.completed":
            usage = [e.response.usage.input_tokens, e.response.usage.output_tokens]
    out["stream_words"] = len(text.split())
    out["stream_usage"] = usage
    out["stream_events"] = [types[0], types[-1], len(types)]
    tools = [{"type": "function", "name": "write_file", "parameters": {"type": "object", "properties": {}}}]
    with oc.responses.stream(model="gpt-4o-mini", input='use a tool [[tool:write_file {"path": "a.txt"}]]', tools=tools) as s:
        final = s.get_final_response()
    call = [i for i in final.output if i.type == "function_call"][0]
    out["tool"] = [call.name, json.loads(call.arguments)]
    try:
        oc.responses.create(model="gpt-4o-mini", input="search", tools=[{"type": "web_search"}])
        out["hosted"] = "forwarded"
    except openai.BadRequestError as e:
        out["hosted"] = [e.status_code, e.code]
    try:
        oc.responses.create(model="gpt-4o-mini", input="long", max_output_tokens=100000)
        out["cap"] = "forwarded"
    except openai.PermissionDeniedError as e:
        out["cap"] = [e.status_code, e.code]
    em = oc.embeddings.create(model="text-embedding-3-small", input=["one two", "three"])
    out["embeddings"] = [len(em.data), len(em.data[0].embedding), em.usage.prompt_tokens]
    return out


def sdk():
    import openai
    import anthropic
    out = {}
    oc = openai.OpenAI(max_retries=0)
    r = oc.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "say hello [[usage:21,7]]"}])
    out["openai_text"] = r.choices[0].message.content
    out["openai_usage"] = [r.usage.prompt_tokens, r.usage.completion_tokens]
    chunks, text, usage = 0, "", None
    for c in oc.chat.completions.create(model="gpt-4o-mini", stream=True,
                                         messages=[{"role": "user", "content": "stream please [[words:12]]"}]):
        chunks += 1
        if c.choices and c.choices[0].delta.content:
            text += c.choices[0].delta.content
        if c.usage:
            usage = [c.usage.prompt_tokens, c.usage.completion_tokens]
    out["openai_stream_chunks"] = chunks
    out["openai_stream_words"] = len(text.split())
    out["openai_stream_usage"] = usage
    r = oc.chat.completions.create(model="gpt-4o-mini", messages=[
        {"role": "user", "content": 'use a tool [[tool:write_file {"path": "/workspace/a.txt", "content": "hi"}]]'}],
        tools=[{"type": "function", "function": {"name": "write_file", "parameters": {"type": "object"}}}])
    tc = r.choices[0].message.tool_calls[0]
    out["openai_tool"] = [tc.function.name, json.loads(tc.function.arguments), r.choices[0].finish_reason]
    name, args = None, ""
    for c in oc.chat.completions.create(model="gpt-4o-mini", stream=True, messages=[
            {"role": "user", "content": 'stream a tool [[tool:exec {"argv": ["ls", "-l"]}]]'}],
            tools=[{"type": "function", "function": {"name": "exec", "parameters": {"type": "object"}}}]):
        if c.choices and c.choices[0].delta.tool_calls:
            d = c.choices[0].delta.tool_calls[0]
            if d.function.name:
                name = d.function.name
            if d.function.arguments:
                args += d.function.arguments
    out["openai_stream_tool"] = [name, json.loads(args)]

    ac = anthropic.Anthropic(max_retries=0)
    m = ac.messages.create(model="claude-3-5-haiku-latest", max_tokens=100,
                           messages=[{"role": "user", "content": "hello claude [[usage:33,11]]"}])
    out["anthropic_text"] = m.content[0].text
    out["anthropic_usage"] = [m.usage.input_tokens, m.usage.output_tokens]
    with ac.messages.stream(model="claude-3-5-haiku-latest", max_tokens=100,
                            messages=[{"role": "user", "content": "stream claude [[words:9]]"}]) as s:
        streamed = "".join(s.text_stream)
        final = s.get_final_message()
    out["anthropic_stream_words"] = len(streamed.split())
    out["anthropic_stream_usage"] = [final.usage.input_tokens, final.usage.output_tokens]
    m = ac.messages.create(model="claude-3-5-haiku-latest", max_tokens=100, tools=[
        {"name": "read_file", "input_schema": {"type": "object"}}],
        messages=[{"role": "user", "content": 'read it [[tool:read_file {"path": "/workspace/a.txt"}]]'}])
    tu = [b for b in m.content if b.type == "tool_use"][0]
    out["anthropic_tool"] = [tu.name, tu.input, m.stop_reason]
    out["models"] = sorted(x.id for x in oc.models.list().data)
    return out


def raw(path, body, key=None, base=None, headers=None):
    """POSTs bytes to the gateway; returns (status, headers, json-or-text)."""
    base = base or os.environ["OPENAI_BASE_URL"].rsplit("/v1", 1)[0]
    h = {"content-type": "application/json", "authorization": "Bearer " + (key or os.environ["OPENAI_API_KEY"])}
    h.update(headers or {})
    req = urllib.request.Request(base + path, data=body, method="POST", headers=h)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            text = json.loads(text)
        except Exception:
            text = text.decode(errors="replace")
        return e.code, {k.lower(): v for k, v in e.headers.items()}, text


def chat(content, model="gpt-4o-mini", **extra):
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    body.update(extra)
    return raw("/v1/chat/completions", json.dumps(body).encode())


def budget(n):
    res = []
    for _ in range(n):
        status, headers, body = chat("spend [[usage:30,10]]")
        res.append({"status": status, "budget": headers.get("x-levain-budget"),
                    "message": body.get("error", {}).get("message") if isinstance(body, dict) and status != 200 else None})
    return {"results": res}


def bad():
    out = {}
    def summary(t):
        status, headers, body = t
        return {"status": status, "denied": headers.get("x-levain-denied"), "error": headers.get("x-levain-error"),
                "message": body.get("error", {}).get("message") if isinstance(body, dict) and "error" in body else None}
    out["malformed"] = summary(raw("/v1/chat/completions", b'{"model": "gpt-4o-mini", "messages": [ oops'))
    out["too_large"] = summary(raw("/v1/chat/completions", json.dumps({"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": "x" * (200 * 1024)}]}).encode()))
    out["unknown_model"] = summary(chat("hi", model="gpt-9-ultra"))
    out["denied_model"] = summary(chat("hi", model="gpt-4o"))
    out["max_tokens"] = summary(chat("hi", max_tokens=100000))
    out["wrong_api"] = summary(chat("hi", model="claude-3-5-haiku-latest"))
    out["bad_key"] = summary(raw("/v1/chat/completions", b'{"model":"gpt-4o-mini","messages":[]}', key="sk-stolen"))
    out["upstream_error"] = summary(chat("fail [[status:500]]"))
    # A stream the upstream breaks off after a few events (50 ms apart, so
    # they are read before the break): what came before
    # the break reaches the client (the gateway passes chunks on as they
    # come, it does not hold the answer), then the client sees the break.
    import openai
    got, err = 0, None
    try:
        for c in openai.OpenAI(max_retries=0).chat.completions.create(
                model="gpt-4o-mini", stream=True,
                messages=[{"role": "user", "content": "break off [[words:30]] [[delay:50]] [[abort:5]]"}]):
            if c.choices and c.choices[0].delta.content:
                got += 1
    except Exception as e:
        err = type(e).__name__
    out["broken_stream"] = {"chunks": got, "error": err}
    # An account selector the jail must not choose: dropped on the way out.
    status, _, body = raw("/v1/chat/completions", json.dumps({"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": "still working [[usage:5,3]]"}]}).encode(),
        headers={"OpenAI-Organization": "org-not-yours", "X-Client-Note": "kept"})
    out["after"] = {"status": status, "text": body["choices"][0]["message"]["content"] if status == 200 else body}
    return out


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "sdk":
        result = sdk()
    elif mode == "responses":
        result = responses()
    elif mode == "budget":
        result = budget(int(sys.argv[2]))
    else:
        result = bad()
    print(json.dumps(result))
