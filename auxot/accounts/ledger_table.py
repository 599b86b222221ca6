"""The text ``python -m auxot usage`` prints: the ledger's rows as a table, then
totals per key and overall.  Pure: rows in (as the store returns them), text out."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

COLUMNS = ("TIME", "KEY", "ENDPOINT", "MODEL", "SERVED BY", "IN", "OUT", "TTFT ms", "TOTAL ms", "STATUS")


def _number(value: float | int | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if isinstance(value, float) else str(value)


def _model(row: dict[str, Any]) -> str:
    asked, served = row["model_requested"] or "-", row["model_served"]
    return asked if not served or served == asked else f"{asked} → {served}"


def _cells(row: dict[str, Any]) -> tuple[str, ...]:
    status = "-" if row["status"] is None else str(row["status"])
    return (
        datetime.fromtimestamp(row["started_at"]).strftime("%Y-%m-%d %H:%M:%S"),
        row["key_id"],
        row["endpoint"],
        _model(row),
        row["provider"] or "-",
        _number(row["input_tokens"]),
        _number(row["output_tokens"]),
        _number(row["ttft_ms"]),
        _number(row["latency_ms"]),
        f"{status} {row['outcome']}",
    )


def _table(header: Sequence[str], body: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(header, *body)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [line(header), *(line(cells) for cells in body)]


def render(rows: list[dict[str, Any]], totals: list[dict[str, Any]], limit: int | None) -> str:
    requests = sum(t["requests"] for t in totals)
    if not requests:
        return "no requests in the ledger for this selection"
    lines = _table(COLUMNS, [_cells(r) for r in rows], right={5, 6, 7, 8})
    if limit is not None and requests > len(rows):
        lines.append(f"(the newest {len(rows)} of {requests} requests; --limit 0 shows all)")
    lines.append("")
    body = [
        (t["key_id"], str(t["requests"]), str(t["not_ok"]), str(t["input_tokens"]), str(t["output_tokens"]),
         _number(t["mean_latency_ms"]))
        for t in totals
    ]
    body.append((
        "total", str(requests), str(sum(t["not_ok"] for t in totals)), str(sum(t["input_tokens"] for t in totals)),
        str(sum(t["output_tokens"] for t in totals)), "",
    ))
    lines += _table(("KEY", "REQUESTS", "NOT OK", "TOKENS IN", "TOKENS OUT", "MEAN ms"), body, right={1, 2, 3, 4, 5})
    return "\n".join(lines)
