"""Health: ``GET /health`` (JSON for machines), ``GET /vhealth`` (a page a
person reads at a glance) and ``GET /metrics`` (Prometheus text).

``/health`` answers 200 while some provider can serve (ready, or startable on
demand) and 503 when none can, so a load balancer can take the router out.
Without a key it says only that, the queue's depth, and each provider's state
and slots; the details (ports, pids, upstream addresses, model files, recent
errors) are for a request with a valid API key — they would show any local
user the way around the router.  A key that is not valid is a 401.
"""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..asgi import Receive, Scope, Send, header, send_json
from ..dialects import openai_chat
from ..errors import AuxotError

if TYPE_CHECKING:
    from ..services import Services


PUBLIC_PROVIDER_FIELDS = ("name", "tier", "state", "healthy", "slots_used", "slots_total")


def _state(app: Services, detailed: bool = True) -> dict[str, Any]:
    providers = app.scheduler.snapshot()
    ok = app.scheduler.can_serve()
    if not detailed:
        return {
            "status": "ok" if ok else "unavailable", "queue_depth": len(app.scheduler.queue),
            "providers": [{k: p.get(k) for k in PUBLIC_PROVIDER_FIELDS} for p in providers],
        }
    return {
        "status": "ok" if ok else "unavailable",
        "version": __version__,
        "uptime_s": round(app.clock() - app.started_at, 1),
        "queue_depth": len(app.scheduler.queue),
        "queue_by_key": len(app.scheduler.queue.depth_by_key()),
        "providers": providers,
        "tools_workers": app.tools.snapshot(),  # their MCP servers, tools and calls (spec/tools_protocol.md)
    }


async def _detailed(app: Services, scope: Scope, send: Send) -> bool | None:
    """Whether the caller showed a valid key; None once a key that is not valid
    has been answered 401."""
    if header(scope, b"authorization") is None:
        return False
    try:
        await app.authenticate(scope)
    except AuxotError as err:
        await send_json(send, err.status, openai_chat.error_body(err))
        return None
    return True


async def health(app: Services, scope: Scope, receive: Receive, send: Send) -> None:
    if (detailed := await _detailed(app, scope, send)) is None:
        return
    body = _state(app, detailed)
    await send_json(send, 200 if body["status"] == "ok" else 503, body)


async def metrics(app: Services, scope: Scope, receive: Receive, send: Send) -> None:
    text = app.metrics.render(
        app.scheduler.snapshot(), len(app.scheduler.queue),
        {"full": app.scheduler.rejected_full, "timeout": app.scheduler.rejected_timeout},
        app.clock() - app.started_at,
    )
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8"), (b"cache-control", b"no-cache")]})
    await send({"type": "http.response.body", "body": text.encode()})


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    return " ".join([*parts, f"{hours}h {minutes:02d}m {secs:02d}s" if hours or days else f"{minutes}m {secs:02d}s"])


STATE_COLOURS = {"ready": "#1a7f37", "starting": "#9a6700", "stopping": "#9a6700", "stopped": "#57606a"}


def _provider_row(p: dict[str, Any], requests: dict[str, float]) -> str:
    e = html.escape
    sitting = f"sitting out {p['sitting_out_s']}s" if "sitting_out_s" in p else "sitting out"
    state = p["state"] if p["healthy"] or p["state"] != "ready" else sitting
    colour = STATE_COLOURS.get(p["state"], "#cf222e") if p["healthy"] or p["state"] != "ready" else "#cf222e"
    facts = []
    accel = p.get("accelerator")
    if isinstance(accel, dict):
        facts.append(e(accel["kind"] + (" · " + ", ".join(d["name"] for d in accel["devices"]) if accel["devices"] else "")))
    for key in ("pid", "restarts", "base_url", "version", "address", "last_heartbeat_s"):
        if p.get(key) not in (None, ""):
            facts.append(f"{key} {e(str(p[key]))}")
    errors = "".join(f"<li>{e(str(err['ago_s']))}s ago: {e(err['message'][:300])}</li>" for err in reversed(p.get("recent_errors", ())))
    return (
        f"<tr><td><b>{e(p['name'])}</b><br><small>{e(str(p.get('kind', '')))}</small></td><td>{e(p['tier'])}</td>"
        f"<td style='color:{colour}'><b>{e(state)}</b></td>"
        f"<td>{p['slots_used']} / {p['slots_total']}</td><td>{int(requests.get(p['name'], 0))}</td>"
        f"<td>{p.get('served', '')}</td><td>{p.get('failed_over', '')}</td>"
        f"<td>{e(', '.join(p.get('models', [])))}</td><td><small>{' · '.join(facts)}</small>"
        f"{'<ul>' + errors + '</ul>' if errors else ''}</td></tr>"
    )


async def vhealth(app: Services, scope: Scope, receive: Receive, send: Send) -> None:
    if (detailed := await _detailed(app, scope, send)) is None:
        return
    state = _state(app, detailed)
    by_provider: dict[str, float] = {}
    by_status: dict[str, float] = {}
    for labels, value in app.metrics.requests.values.items():
        d = dict(labels)
        by_provider[d["provider"]] = by_provider.get(d["provider"], 0) + value
        by_status[d["status"]] = by_status.get(d["status"], 0) + value
    ok = state["status"] == "ok"
    rows = "".join(_provider_row(p, by_provider) for p in state["providers"])
    statuses = ", ".join(f"{html.escape(k)}: {int(v)}" for k, v in sorted(by_status.items())) or "none yet"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>auxot {"ok" if ok else "UNAVAILABLE"}</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em;color:#1f2328}} table{{border-collapse:collapse}}
td,th{{border-bottom:1px solid #d0d7de;padding:6px 10px;text-align:left;vertical-align:top}}
ul{{margin:4px 0;padding-left:1.2em;color:#cf222e}}</style>
</head><body>
<h1 style="color:{"#1a7f37" if ok else "#cf222e"}">auxot is {"serving" if ok else "UNAVAILABLE: no provider can serve"}</h1>
<p>{f"version {html.escape(__version__)} · up {_duration(state['uptime_s'])} · " if detailed else ""}queue {state["queue_depth"]} waiting
 · requests by status: {statuses} · {time.strftime("%Y-%m-%d %H:%M:%S %Z")}</p>
<table><tr><th>provider</th><th>tier</th><th>state</th><th>slots</th><th>requests</th><th>served</th><th>failed over</th>
<th>models</th><th>facts and recent errors</th></tr>{rows}</table>
<p><small>Machine-readable: <a href="/health">/health</a> · <a href="/metrics">/metrics</a>. This page refreshes every 5 s.</small></p>
</body></html>
"""
    await send({"type": "http.response.start", "status": 200 if ok else 503,
                "headers": [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-cache")]})
    await send({"type": "http.response.body", "body": page.encode()})
