"""A conversation as one prompt, for CLIs that take only a prompt (Codex, Cursor).

Claude Code takes prior turns natively (a session file, see
:mod:`.claude_code`); ``codex exec`` and ``cursor-agent -p`` take one prompt
per run, so the earlier turns are written into it in the transcript format
documented in spec/mapping.md §cli-transcript::

    <conversation>
    <user>
    What is 2+2?
    </user>
    <assistant>
    <tool_call id="call_1" name="calc">{"expr": "2+2"}</tool_call>
    </assistant>
    <tool_result id="call_1">
    4
    </tool_result>
    </conversation>

    <the last user turn, verbatim>

A conversation of a single user turn is sent verbatim, with no markup.  The
system prompt is not part of the transcript: each CLI has its own place for
it (Codex: ``model_instructions_file``; Cursor: a leading ``<system>``
section, the only place it has).  Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import ir


@dataclass(frozen=True)
class Prompt:
    text: str
    images: tuple[ir.Image, ...]  # images of the last user turn, for CLIs that attach files


def _escape(text: str) -> str:
    # Only the transcript's own closing tags need care: a turn that contains
    # "</user>" must not end the turn early for a reader of the transcript.
    for tag in ("</user>", "</assistant>", "</tool_result>", "</conversation>", "</system>", "</tool_call>"):
        text = text.replace(tag, tag.replace("</", "<\\/"))
    return text


def _part(part: ir.Part, escape: bool = True) -> str:
    match part:
        case ir.Text(text=text):
            return _escape(text) if escape else text
        case ir.Image(url=url, media_type=media_type):
            return f"[image: {url}]" if url else f"[image: {media_type or 'inline'} attached to an earlier turn]"
        case ir.Thinking():
            return ""  # reasoning is the model's own scratch space, not conversation
        case ir.ToolCall(id=call_id, name=name, arguments=arguments):
            return f'<tool_call id="{_escape(call_id)}" name="{_escape(name)}">{_escape(arguments)}</tool_call>'
        case ir.ToolResult(tool_call_id=call_id, content=content, is_error=is_error):
            flag = ' is_error="true"' if is_error else ""
            inner = "\n".join(_part(p) for p in content)
            return f'<tool_result id="{_escape(call_id)}"{flag}>\n{inner}\n</tool_result>'
    return ""


def _turn(message: ir.Message) -> str:
    if message.role is ir.Role.TOOL:  # tool results stand on their own
        return "\n".join(_part(p) for p in message.content)
    tag = message.role.value
    body = "\n".join(s for s in (_part(p) for p in message.content) if s)
    return f"<{tag}>\n{body}\n</{tag}>"


def system_text(req: ir.Request) -> str:
    """Every system prompt of the request, leading and mid-conversation, in order
    (mapping §system: a CLI has one place for it)."""
    texts = [t.text for t in req.system]
    for message in req.messages:
        if message.role is ir.Role.SYSTEM:
            texts.extend(p.text for p in message.content if isinstance(p, ir.Text))
    return "\n\n".join(texts)


def render(req: ir.Request) -> Prompt:
    """The request's conversation (system prompts excluded) as one prompt."""
    messages = [m for m in req.messages if m.role is not ir.Role.SYSTEM]
    last = messages[-1] if messages and messages[-1].role is ir.Role.USER else None
    earlier = messages[:-1] if last is not None else messages
    images = tuple(p for p in last.content if isinstance(p, ir.Image) and p.data is not None) if last else ()
    tail = ""
    if last is not None:
        # Inline images are attached as files where the CLI can (Codex -i); URLs stay in the text.
        # The last turn follows the transcript, so it is sent as is.
        parts = (_part(p, escape=False) for p in last.content if not (isinstance(p, ir.Image) and p.data is not None))
        tail = "\n".join(s for s in parts if s)
    if not earlier:
        return Prompt(tail, images)
    history = "\n".join(_turn(m) for m in earlier)
    text = f"<conversation>\n{history}\n</conversation>"
    return Prompt(f"{text}\n\n{tail}" if tail else text, images)
