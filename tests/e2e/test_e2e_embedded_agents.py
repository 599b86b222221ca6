"""What the embedded default does with an agent CLI's real request: Claude Code
2.1.197's request for ``claude -p "Say hello"`` with its default flags and tools
(recorded from the real CLI into tests/golden/, 77 KB: 24 tools, a system turn
after the user's), sent to `auxot serve` on the real llama-server and SmolLM2.

The answer itself is not judged: SmolLM2-135M cannot drive an agent (given this
prompt it continues the prompt's text; tests/test_e2e_agent_clis.py runs the CLIs
end to end).  What the router must get right is judged: the request fits the
embedded model's context, its tools reach the prompt, and a second turn of the
same conversation does not prefill it again."""

from __future__ import annotations

import copy
import json
from typing import Any

import anthropic

from tests.support import GOLDEN
from tests.support.router_process import RouterProcess

RECORDED = json.loads((GOLDEN / "claude_code_2.1.197_default_request.json").read_text())


def claude(router: RouterProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=router.base_url + "/api/anthropic", api_key=router.key, max_retries=0, timeout=600)


def test_claude_code_s_default_request_fits_carries_its_tools_and_reuses_its_prefix(router: RouterProcess) -> None:
    client = claude(router)
    body = copy.deepcopy(RECORDED)
    counted = client.messages.count_tokens(model=body["model"], messages=body["messages"], system=body["system"],
                                           tools=body["tools"]).input_tokens
    without_tools = client.messages.count_tokens(model=body["model"], messages=body["messages"], system=body["system"]).input_tokens
    assert counted - without_tools > 10_000  # the 24 tool definitions are in the prompt
    assert counted < 32_768  # and the whole of it fits one slot of the embedded default

    body["max_tokens"] = 4  # the router's work is what is measured here, not the model's prose
    first = client.messages.create(**_create_args(body))
    assert first.model == "SmolLM2-135M-Instruct"
    assert abs(first.usage.input_tokens + (first.usage.cache_read_input_tokens or 0) - counted) <= 2
    turn = copy.deepcopy(body)
    turn["messages"] += [{"role": "assistant", "content": [{"type": "text", "text": "".join(b.text for b in first.content)}]},
                         {"role": "user", "content": "And now say goodbye."}]
    second = client.messages.create(**_create_args(turn))
    assert (second.usage.cache_read_input_tokens or 0) > counted - 100  # the first turn's prompt was not processed again
    assert second.usage.input_tokens < 200
    client.close()


def _create_args(body: dict[str, Any]) -> dict[str, Any]:
    known = ("model", "max_tokens", "messages", "system", "tools", "metadata", "thinking")
    return {**{k: body[k] for k in known if k in body}, "extra_body": {k: v for k, v in body.items() if k not in known + ("stream",)}}
