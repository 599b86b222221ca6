"""Extract conformance cases from the spec documents.

A case is a ``### id`` heading followed by ``Source:``, ``Expect:`` and optional
``Body:`` (the JSON a shell construct in the curl would produce), ``Model: keep``
(do not substitute the model) and ``Key:`` (send this key instead of the real one)
lines, then a fenced ``sh`` block holding the curl command, verbatim from the document.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .curl import CurlCommand, parse

SPEC_DIR = Path(__file__).resolve().parent.parent / "spec"
HEADING = re.compile(r"^### (?P<id>[a-z0-9-]+)\s*$", re.M)
FIELD = re.compile(r"^(Source|Expect|Body|Model|Key): (.*)$", re.M)
FENCE = re.compile(r"```sh\n(.*?)```", re.S)


@dataclass
class Case:
    id: str
    spec: str
    source: str
    expect: str
    curl: CurlCommand
    body: Any
    keep_model: bool
    key: str | None


def load(spec_dir: Path = SPEC_DIR) -> list[Case]:
    cases: list[Case] = []
    for path in sorted(spec_dir.glob("*.md")):
        text = path.read_text()
        marks = list(HEADING.finditer(text))
        for n, mark in enumerate(marks):
            section = text[mark.end() : marks[n + 1].start() if n + 1 < len(marks) else len(text)]
            fields = dict(FIELD.findall(section))
            fence = FENCE.search(section)
            if "Expect" not in fields or fence is None:
                continue
            curl = parse(fence.group(1).strip())
            body = json.loads(fields["Body"]) if "Body" in fields else (json.loads(curl.data) if curl.data else None)
            cases.append(Case(mark.group("id"), path.name, fields.get("Source", "?"), fields["Expect"].strip(), curl, body,
                              fields.get("Model", "").strip() == "keep", fields.get("Key", "").strip() or None))
    return cases
