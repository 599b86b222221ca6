"""The Responses required-field lists (spec/responses.md §required fields), and
checks of response objects and stream events against them.

The lists are data in the spec, read from its one ```json block, so the
document and the checks cannot drift apart.  Each check returns a list of
problems, empty when the object conforms.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

SPEC = Path(__file__).resolve().parent.parent / "spec" / "responses.md"


@cache
def required() -> dict[str, Any]:
    text = SPEC.read_text(encoding="utf-8")
    section = text[text.index("### Required fields"):]
    match = re.search(r"```json\n(.*?)\n```", section, re.DOTALL)
    if match is None:
        raise RuntimeError(f"{SPEC}: no ```json block under 'Required fields'")
    lists: dict[str, Any] = json.loads(match.group(1))
    return lists


def _absent(obj: Any, fields: list[str], where: str) -> list[str]:
    if not isinstance(obj, dict):
        return [f"{where} is not an object: {obj!r:.80}"]
    return [f"{where} lacks {name!r}" for name in fields if name not in obj]


def item_problems(item: Any, where: str) -> list[str]:
    lists = required()
    if not isinstance(item, dict):
        return [f"{where} is not an object"]
    kind = str(item.get("type"))
    if kind not in lists["items"]:
        return [f"{where}.type {kind!r} is not an output item type"]
    problems = _absent(item, lists["items"][kind], where)
    field = {"message": "content", "reasoning": "summary"}.get(kind)
    parts = item.get(field) if field else None
    for j, part in enumerate(parts if isinstance(parts, list) else []):
        problems += part_problems(part, f"{where}.{field}[{j}]")
    return problems


def part_problems(part: Any, where: str) -> list[str]:
    lists = required()
    kind = part.get("type") if isinstance(part, dict) else None
    if kind not in lists["parts"]:
        return [f"{where}.type {kind!r} is not a known content part"]
    return _absent(part, lists["parts"][kind], where)


def response_problems(response: Any, where: str = "response") -> list[str]:
    """Every required field of the response object, its output items and usage."""
    lists = required()
    problems = _absent(response, lists["response"], where)
    if problems and not isinstance(response, dict):
        return problems
    if response.get("object") != "response":
        problems.append(f"{where}.object is {response.get('object')!r}, not 'response'")
    for i, item in enumerate(response.get("output") or []):
        problems += item_problems(item, f"{where}.output[{i}]")
    if response.get("usage") is not None:
        problems += _absent(response["usage"], lists["usage"], f"{where}.usage")
    if response.get("status") == "completed" and not isinstance(response.get("completed_at"), int):
        problems.append(f"{where}.completed_at is {response.get('completed_at')!r} in a completed response")
    for name in ("temperature", "top_p"):
        if not isinstance(response.get(name), (int, float)) or isinstance(response.get(name), bool):
            problems.append(f"{where}.{name} is {response.get(name)!r}, not the number used")
    return problems


def event_problems(event: Any) -> list[str]:
    """One stream event: its own required fields, and those of the response,
    item or part it carries."""
    lists = required()
    kind = str(event.get("type")) if isinstance(event, dict) else "?"
    if kind == "error":
        return _absent(event, ["type", "sequence_number", "message"], "error event")
    if kind not in lists["events"]:
        return [f"unknown event type {kind!r}"]
    problems = _absent(event, lists["events"][kind], kind)
    if isinstance(event.get("response"), dict):
        problems += response_problems(event["response"], f"{kind}.response")
    if isinstance(event.get("item"), dict):
        problems += item_problems(event["item"], f"{kind}.item")
    if isinstance(event.get("part"), dict):
        problems += part_problems(event["part"], f"{kind}.part")
    return problems


def stream_problems(events: list[dict[str, Any]]) -> list[str]:
    """Every event's fields, and the sequence numbers: 0, 1, 2, … without gaps."""
    problems = [p for event in events for p in event_problems(event)]
    numbers = [e.get("sequence_number") for e in events if isinstance(e, dict)]
    if numbers != list(range(len(numbers))):
        problems.append(f"sequence_number runs {numbers[:12]}…, not 0, 1, 2, … without gaps")
    return problems
