"""Whether a cut-off answer is still the beginning of a JSON document: an answer
cut at max_tokens under a JSON grammar must be, so a deployment's JSON mode can
be judged even when the model's JSON outgrew the token limit."""

from __future__ import annotations

import json

# What may follow a JSON document's cut-off beginning to complete it (a partial
# literal, a missing value or key, a number's missing digits).
_FILLERS = ("", "null", '"":null', ":null", "0", "rue", "ue", "e", "alse", "lse", "se", "ull", "ll", "l")


def json_prefix(text: str) -> bool:
    """Whether ``text`` is the beginning of some JSON document (an answer cut at
    max_tokens under a JSON grammar must be)."""
    closers: list[str] = []
    in_string = escaped = False
    for ch in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            closers.append("}" if ch == "{" else "]")
        elif ch in "}]" and (not closers or closers.pop() != ch):
            return False
    if not text.strip():
        return False
    tail = ('n"' if escaped else '"') if in_string else ""
    end = "".join(reversed(closers))
    stem = text.rstrip().rstrip(",") if not in_string else text
    for base in {text, stem}:
        for filler in _FILLERS:
            try:
                json.loads(base + tail + filler + end)
                return True
            except ValueError:
                continue
    return False
