"""Parse a documented curl command into method, URL, headers and body."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field


@dataclass
class CurlCommand:
    url: str
    method: str = "GET"
    headers: list[tuple[str, str]] = field(default_factory=list)
    data: str | None = None


def parse(command: str) -> CurlCommand:
    text = command.replace("\\\n", " ")
    tokens = shlex.split(text, posix=True)
    if "|" in tokens:  # `curl … | jq …`: only the curl part is the request
        tokens = tokens[: tokens.index("|")]
    if not tokens or tokens[0] != "curl":
        raise ValueError(f"not a curl command: {command[:40]!r}")
    url = None
    method = None
    headers: list[tuple[str, str]] = []
    data = None
    i = 1
    while i < len(tokens):
        tok = tokens[i]
        if tok in ("-H", "--header"):
            name, _, value = tokens[i + 1].partition(":")
            headers.append((name.strip(), value.strip()))
            i += 2
        elif tok in ("-d", "--data", "--data-raw", "--data-binary"):
            data = tokens[i + 1]
            i += 2
        elif tok in ("-X", "--request"):
            method = tokens[i + 1]
            i += 2
        elif tok.startswith("-"):
            i += 1  # flags without a value (-s, -S, -sS, -N, -v)
        else:
            # The first positional token is the URL; later ones can only be pieces of a
            # shell construct (e.g. `-d "$(jq …)"`), whose result a case gives as Body.
            url = url or tok
            i += 1
    if url is None:
        raise ValueError("curl command without a URL")
    return CurlCommand(url, method or ("POST" if data is not None else "GET"), headers, data)


def path_of(url: str) -> str:
    """The path part of a documented URL, whatever its host placeholder
    (``https://YOUR-AUXOT-HOST/api/…``, ``$AUXOT_BASE_URL/api/…``, ``http://localhost:8420/…``)."""
    if url.startswith("$"):
        return "/" + url.split("/", 1)[1] if "/" in url else "/"
    rest = url.split("://", 1)[1] if "://" in url else url
    return "/" + rest.split("/", 1)[1] if "/" in rest else "/"
