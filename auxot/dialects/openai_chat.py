"""OpenAI Chat Completions ⇄ IR.

Pure: requests and responses are plain JSON values (dicts) in and out.  Streams
live in :mod:`.openai_chat_stream`, which builds on the mappings here.  Field-by-field mappings and what cannot be carried
are written down in spec/mapping.md; the section names are cited below as
``mapping §...``.
"""

from __future__ import annotations

from typing import Any

from .. import ir
from ..errors import AuxotError, ErrorKind, InvalidRequest
from . import check, logprobs, mcp_use

# mapping §stop-reasons
FINISH_TO_STOP = {
    "stop": ir.StopReason.END_TURN,
    "length": ir.StopReason.MAX_TOKENS,
    "tool_calls": ir.StopReason.TOOL_USE,
    "function_call": ir.StopReason.TOOL_USE,
    "content_filter": ir.StopReason.REFUSAL,
}
STOP_TO_FINISH = {
    ir.StopReason.END_TURN: "stop",
    ir.StopReason.STOP_SEQUENCE: "stop",
    ir.StopReason.MAX_TOKENS: "length",
    ir.StopReason.TOOL_USE: "tool_calls",
    ir.StopReason.REFUSAL: "content_filter",
}

# mapping §errors
ERROR_TYPES: dict[str, str] = {
    ErrorKind.INVALID_REQUEST: "invalid_request_error",
    ErrorKind.AUTHENTICATION: "authentication_error",
    ErrorKind.PERMISSION: "permission_error",
    ErrorKind.NOT_FOUND: "not_found_error",
    ErrorKind.REQUEST_TOO_LARGE: "invalid_request_error",
    ErrorKind.RATE_LIMIT: "rate_limit_error",
    ErrorKind.UPSTREAM: "upstream_error",
    ErrorKind.UNAVAILABLE: "service_unavailable",
    ErrorKind.TIMEOUT: "timeout",
    ErrorKind.INTERNAL: "server_error",
}
ERROR_CODES: dict[str, str] = {
    ErrorKind.AUTHENTICATION: "invalid_api_key",
    ErrorKind.REQUEST_TOO_LARGE: "request_too_large",
    ErrorKind.RATE_LIMIT: "rate_limit_exceeded",
}


def error_body(err: AuxotError) -> dict[str, Any]:
    return error_fields(err.kind, err.message, err.param)


def error_fields(kind: str, message: str, param: str | None = None) -> dict[str, Any]:
    code = "model_not_found" if kind == ErrorKind.NOT_FOUND and param == "model" else ERROR_CODES.get(kind)
    return {"error": {"message": message, "type": ERROR_TYPES.get(kind, "server_error"), "param": param, "code": code}}


# --- requests ----------------------------------------------------------------


def decode_request(body: Any) -> ir.Request:
    """A Chat Completions request body (parsed JSON) → IR.  Raises InvalidRequest
    naming the field path and the offending value."""
    body = check.obj(body, "body")
    model = check.model_id(body.get("model"))
    raw_messages = check.array(body.get("messages"), "messages", required=True)
    if not raw_messages:
        raise InvalidRequest("Messages array cannot be empty", param="messages")

    system: list[ir.Text] = []
    messages: list[ir.Message] = []
    for i, raw in enumerate(raw_messages):
        message = _decode_message(raw, f"messages[{i}]")
        if message.role is ir.Role.SYSTEM and not messages:
            system.extend(p for p in message.content if isinstance(p, ir.Text))
        else:
            messages.append(message)

    choices_asked(body)  # the endpoint asks for them one by one (auxot/choices.py)

    stop = body.get("stop")
    if isinstance(stop, str):
        stops: tuple[str, ...] = (stop,)
    elif stop is None:
        stops = ()
    else:
        stops = tuple(check.string(s, f"stop[{j}]") for j, s in enumerate(check.array(stop, "stop")))

    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    sampling = ir.Sampling(
        temperature=check.number(body.get("temperature"), "temperature", 0, 2),
        top_p=check.number(body.get("top_p"), "top_p", 0, 1),
        top_k=check.integer(body.get("top_k"), "top_k", 0),
        max_tokens=check.integer(max_tokens, "max_tokens", 1),
        presence_penalty=check.number(body.get("presence_penalty"), "presence_penalty", -2, 2),
        frequency_penalty=check.number(body.get("frequency_penalty"), "frequency_penalty", -2, 2),
        seed=check.integer(body.get("seed"), "seed"),
        stop=stops,
        logit_bias=_decode_logit_bias(body.get("logit_bias")),
        logprobs=logprobs.requested(body.get("logprobs"), body.get("top_logprobs")),
    )
    stream_options = body.get("stream_options")
    include_usage = False
    if stream_options is not None:
        include_usage = bool(check.obj(stream_options, "stream_options").get("include_usage"))
    metadata = body.get("metadata")
    declared = [_decode_tool(t, f"tools[{j}]") for j, t in enumerate(check.array(body.get("tools"), "tools"))]
    return ir.Request(
        model=model,
        messages=tuple(messages),
        system=tuple(system),
        tools=tuple(t for t in declared if isinstance(t, ir.Tool)),
        mcp=tuple(t for t in declared if isinstance(t, ir.McpUse)),
        tool_choice=_decode_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=check.boolean(body.get("parallel_tool_calls"), "parallel_tool_calls"),
        sampling=sampling,
        response_format=_decode_response_format(body.get("response_format")),
        stream=bool(check.boolean(body.get("stream"), "stream")),
        include_usage=include_usage,
        metadata=check.obj(metadata, "metadata") if metadata is not None else None,
        user=check.string(body.get("user"), "user") if body.get("user") is not None else None,
        reasoning=_decode_reasoning(body.get("reasoning_effort")),
        extensions=_decode_extensions(body),
    )


# llama.cpp's own /v1/chat/completions fields (tools/server/README.md), with the JSON
# type each must have; passed to llama.cpp providers as written (mapping §llama-extensions).
LLAMA_EXTENSIONS: dict[str, type | tuple[type, ...]] = {
    "grammar": str, "json_schema": dict, "min_p": (int, float), "typical_p": (int, float),
    "repeat_penalty": (int, float), "repeat_last_n": int, "penalize_nl": bool, "mirostat": int,
    "mirostat_tau": (int, float), "mirostat_eta": (int, float), "cache_prompt": bool, "id_slot": int, "n_keep": int,
    "ignore_eos": bool, "dynatemp_range": (int, float), "dynatemp_exponent": (int, float),
    "xtc_probability": (int, float), "xtc_threshold": (int, float), "dry_multiplier": (int, float),
    "dry_base": (int, float), "dry_allowed_length": int, "dry_penalty_last_n": int, "top_n_sigma": (int, float),
    "samplers": list, "t_max_predict_ms": int, "n_indent": int,
}


MAX_CHOICES = 8  # more would hold a provider for that many answers' time


def choices_asked(body: dict[str, Any]) -> int:
    """``n``: how many answers (choices) the client wants."""
    n = check.integer(body.get("n"), "n", 1)
    if n is not None and n > MAX_CHOICES:
        raise InvalidRequest(f"n must be at most {MAX_CHOICES}; got {n}", param="n")
    return n or 1


def _decode_extensions(body: dict[str, Any]) -> dict[str, Any] | None:
    found = {}
    for name, kind in LLAMA_EXTENSIONS.items():
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
            expected = {str: "a string", dict: "an object", int: "an integer", bool: "true or false", list: "an array"}.get(
                kind if isinstance(kind, type) else float, "a number")
            raise InvalidRequest(f"{name} must be {expected}; got {value!r:.60}", param=name)
        found[name] = value
    return found or None


def _decode_reasoning(effort: Any) -> ir.Reasoning | None:
    if effort is None:
        return None
    if effort not in ("none", "minimal", "low", "medium", "high", "xhigh"):
        raise InvalidRequest(f"reasoning_effort must be none, minimal, low, medium or high; got {effort!r}", param="reasoning_effort")
    return ir.Reasoning(enabled=effort != "none", effort=effort)


def _decode_logit_bias(raw: Any) -> dict[str, float] | None:
    if raw is None:
        return None
    bias = check.obj(raw, "logit_bias")
    for token, value in bias.items():
        if not token.lstrip("-").isdigit():
            raise InvalidRequest(f"logit_bias keys must be token ids; got {token!r}", param="logit_bias")
        check.number(value, f"logit_bias.{token}", -100, 100)
    return bias


def _decode_message(raw: Any, path: str) -> ir.Message:
    raw = check.obj(raw, path)
    role = raw.get("role")
    content = raw.get("content")
    match role:
        case "system" | "developer":
            return ir.Message(ir.Role.SYSTEM, tuple(_decode_parts(content, f"{path}.content", images=False)))
        case "user":
            return ir.Message(ir.Role.USER, tuple(_decode_parts(content, f"{path}.content", images=True)), raw.get("name"))
        case "assistant":
            parts: list[ir.Part] = []
            reasoning = raw.get("reasoning_content")
            if isinstance(reasoning, str) and reasoning:
                parts.append(ir.Thinking(reasoning))
            if content is not None:
                parts.extend(_decode_parts(content, f"{path}.content", images=False, refusal=True))
            for j, call in enumerate(check.array(raw.get("tool_calls"), f"{path}.tool_calls")):
                cpath = f"{path}.tool_calls[{j}]"
                call = check.obj(call, cpath)
                fn = check.obj(call.get("function"), f"{cpath}.function", required=True)
                arguments = fn.get("arguments", "")
                parts.append(ir.ToolCall(
                    check.string(call.get("id"), f"{cpath}.id", required=True),
                    check.string(fn.get("name"), f"{cpath}.function.name", required=True),
                    check.string(arguments, f"{cpath}.function.arguments") or "{}",
                ))
            return ir.Message(ir.Role.ASSISTANT, tuple(parts), raw.get("name"))
        case "tool":
            call_id = check.string(raw.get("tool_call_id"), f"{path}.tool_call_id", required=True)
            result_parts = _decode_parts(content, f"{path}.content", images=True)
            return ir.Message(ir.Role.TOOL, (ir.ToolResult(call_id, tuple(result_parts)),))  # type: ignore[arg-type]
        case _:
            raise InvalidRequest(
                f"{path}.role must be one of system, developer, user, assistant, tool; got {role!r}",
                param=f"{path}.role",
            )


def _decode_parts(content: Any, path: str, *, images: bool, refusal: bool = False) -> list[ir.Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [ir.Text(content)] if content else []
    parts: list[ir.Part] = []
    for j, part in enumerate(check.array(content, path)):
        ppath = f"{path}[{j}]"
        part = check.obj(part, ppath)
        kind = part.get("type")
        if kind == "text":
            parts.append(ir.Text(check.string(part.get("text"), f"{ppath}.text", required=True)))
        elif kind == "refusal" and refusal:
            parts.append(ir.Text(check.string(part.get("refusal"), f"{ppath}.refusal", required=True)))
        elif kind == "image_url" and images:
            image = part.get("image_url")
            if isinstance(image, str):
                image = {"url": image}
            image = check.obj(image, f"{ppath}.image_url", required=True)
            url = check.string(image.get("url"), f"{ppath}.image_url.url", required=True)
            parts.append(image_from_url(url, image.get("detail")))
        else:
            raise InvalidRequest(f"{ppath}.type {kind!r} is not supported here", param=f"{ppath}.type")
    return parts


def image_from_url(url: str, detail: str | None = None) -> ir.Image:
    """``data:`` URLs become inline base64 images (mapping §images)."""
    if url.startswith("data:") and ";base64," in url:
        media_type, _, data = url[5:].partition(";base64,")
        return ir.Image(media_type=media_type or None, data=data, detail=detail)
    return ir.Image(url=url, detail=detail)


def _decode_tool(raw: Any, path: str) -> ir.Tool | ir.McpUse:
    raw = check.obj(raw, path)
    if raw.get("type") == "mcp":  # an MCP server the router's tools workers run (spec/tools_protocol.md §explicit)
        return mcp_use.from_openai(raw, path)
    if raw.get("type", "function") != "function":
        raise InvalidRequest(f"{path}.type {raw.get('type')!r} is not supported; only 'function' and 'mcp'", param=f"{path}.type")
    return decode_function(check.obj(raw.get("function"), f"{path}.function", required=True), f"{path}.function")


def decode_function(fn: dict[str, Any], path: str) -> ir.Tool:
    """``{name, description, parameters, strict}``: nested under ``function`` here,
    flat in the Responses dialect."""
    params = fn.get("parameters")
    return ir.Tool(
        name=check.string(fn.get("name"), f"{path}.name", required=True),
        description=check.string(fn.get("description"), f"{path}.description"),
        parameters=check.obj(params, f"{path}.parameters") if params is not None else None,
        strict=check.boolean(fn.get("strict"), f"{path}.strict"),
    )


def _decode_tool_choice(raw: Any) -> ir.ToolChoice | None:
    if raw is None:
        return None
    if raw in ("auto", "none", "required"):
        return ir.ToolChoice(raw)
    if isinstance(raw, dict) and raw.get("type") == "function":
        fn = check.obj(raw.get("function"), "tool_choice.function", required=True)
        return ir.ToolChoice("tool", check.string(fn.get("name"), "tool_choice.function.name", required=True))
    raise InvalidRequest(f"tool_choice must be 'auto', 'none', 'required' or a function; got {raw!r}", param="tool_choice")


def _decode_response_format(raw: Any) -> ir.ResponseFormat | None:
    if raw is None:
        return None
    raw = check.obj(raw, "response_format")
    kind = raw.get("type")
    if kind in ("text", "json_object"):
        return ir.ResponseFormat(kind)
    if kind == "json_schema":
        spec = check.obj(raw.get("json_schema"), "response_format.json_schema", required=True)
        return decode_json_schema(spec, "response_format.json_schema")
    raise InvalidRequest(f"response_format.type must be text, json_object or json_schema; got {kind!r}", param="response_format.type")


def decode_json_schema(spec: dict[str, Any], path: str) -> ir.ResponseFormat:
    """``{name, schema, strict}``: under ``json_schema`` here, flat in Responses' ``text.format``."""
    schema = spec.get("schema")
    return ir.ResponseFormat(
        "json_schema",
        schema=check.obj(schema, f"{path}.schema") if schema is not None else None,
        name=check.string(spec.get("name"), f"{path}.name"),
        strict=check.boolean(spec.get("strict"), f"{path}.strict"),
    )


def encode_usage(usage: ir.Usage) -> dict[str, Any]:
    """mapping §usage: prompt_tokens counts cached tokens too."""
    prompt = (usage.input_tokens or 0) + (usage.cache_read_tokens or 0) + (usage.cache_write_tokens or 0)
    completion = usage.output_tokens or 0
    encoded: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if usage.cache_read_tokens:
        encoded["prompt_tokens_details"] = {"cached_tokens": usage.cache_read_tokens}
    return encoded


def decode_usage(raw: Any) -> ir.Usage:
    if not isinstance(raw, dict):
        return ir.Usage()
    details = raw.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    prompt = raw.get("prompt_tokens")
    if isinstance(prompt, int) and isinstance(cached, int):
        prompt -= cached
    return ir.Usage(
        input_tokens=prompt if isinstance(prompt, int) else None,
        output_tokens=raw.get("completion_tokens") if isinstance(raw.get("completion_tokens"), int) else None,
        cache_read_tokens=cached if isinstance(cached, int) and cached else None,
    )


def encode_response(resp: ir.Response, created: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": resp.id,
        "object": "chat.completion",
        "created": created,
        "model": resp.model,
        "choices": [_choice(c, i) for i, c in enumerate(resp.choices or (resp,))],
        "usage": encode_usage(resp.usage),
    }
    if resp.fingerprint is not None:
        body["system_fingerprint"] = resp.fingerprint  # the upstream's, passed through (mapping §fingerprint)
    return body


def _choice(resp: ir.Response, index: int) -> dict[str, Any]:
    text = "".join(p.text for p in resp.content if isinstance(p, ir.Text))
    calls = [p for p in resp.content if isinstance(p, ir.ToolCall)]
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
    reasoning = "".join(p.text for p in resp.content if isinstance(p, ir.Thinking))
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls
        ]
    return {
        "index": index,
        "message": message,
        "logprobs": {"content": logprobs.encode(resp.logprobs), "refusal": None} if resp.logprobs is not None else None,
        "finish_reason": STOP_TO_FINISH.get(resp.stop_reason) if resp.stop_reason else None,
    }


def decode_response(body: Any) -> ir.Response:
    body = check.obj(body, "response")
    choices = check.array(body.get("choices"), "choices", required=True)
    if not choices:
        raise InvalidRequest("upstream response has no choices", param="choices")
    choice = check.obj(choices[0], "choices[0]")
    message = _decode_message(check.obj(choice.get("message"), "choices[0].message", required=True), "choices[0].message")
    content = tuple(p for p in message.content if isinstance(p, (ir.Text, ir.Thinking, ir.ToolCall)))
    return ir.Response(
        id=str(body.get("id", "")),
        model=str(body.get("model", "")),
        content=content,
        stop_reason=FINISH_TO_STOP.get(choice["finish_reason"]) if isinstance(choice.get("finish_reason"), str) else None,
        usage=decode_usage(body.get("usage")),
    )
