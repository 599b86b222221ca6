"""Which server tools a request gets (tools/policy.py, tools/client_servers.py's
check) and how each dialect names an MCP server (dialects/mcp_use.py).  Pure."""

from __future__ import annotations

import dataclasses

import pytest

from auxot import ir
from auxot.config import ToolsConfig
from auxot.dialects import anthropic, openai_chat, responses
from auxot.errors import InvalidRequest, PermissionDenied
from auxot.tools import client_servers, policy
from auxot.tools.policy import Grant

AVAILABLE = {f"{server}__{tool}": {"name": f"{server}__{tool}", "server": server, "description": "", "input_schema": {}}
             for server, tool in [("test", "add"), ("test", "echo"), ("auxot", "web_fetch"), ("files", "read")]}


def test_patterns_match_exposed_names_and_bare_tool_names() -> None:
    assert policy.allowed(["test__*"], "test__add") and not policy.allowed(["test__*"], "files__read")
    assert policy.allowed(["web_fetch"], "auxot__web_fetch") and not policy.allowed(["web_fetch"], "test__web")
    assert not policy.allowed([], "test__add")


def test_policy_mode_gives_a_key_its_tools_and_what_the_request_names() -> None:
    assert set(policy.chosen(Grant(("test__add",)), (), AVAILABLE, "policy")) == {"test__add"}
    assert policy.chosen(Grant(()), (), AVAILABLE, "policy") == {}  # default: none
    named = (ir.McpUse("test", ("echo",)),)
    assert set(policy.chosen(Grant(("test__*",)), named, AVAILABLE, "policy")) == {"test__add", "test__echo"}


def test_a_team_limit_cuts_its_keys_own_tools() -> None:
    assert set(policy.chosen(Grant(("test__*",), ("test__echo", "files__*")), (), AVAILABLE, "policy")) == {"test__echo"}
    assert policy.chosen(Grant(("test__*",), ()), (), AVAILABLE, "policy") == {}  # the team allows none
    assert not Grant(("files__*",), ("test__*",)).allows("files__read")  # the team's limit is not a grant of its own
    assert Grant(("test__add",), None).allows("test__add")  # no team limit: the key's own


def test_explicit_mode_gives_only_what_the_request_names_within_the_key() -> None:
    assert policy.chosen(Grant(("test__*", "files__*")), (), AVAILABLE, "explicit") == {}
    named = (ir.McpUse("test", ("echo",)),)
    assert set(policy.chosen(Grant(("test__*", "files__*")), named, AVAILABLE, "explicit")) == {"test__echo"}
    assert set(policy.chosen(Grant(("test__*",)), (ir.McpUse("test"),), AVAILABLE, "explicit")) == {"test__add", "test__echo"}
    with pytest.raises(PermissionDenied, match="may not use the tools of MCP server 'files'"):
        policy.chosen(Grant(("test__*",)), (ir.McpUse("files"),), AVAILABLE, "explicit")
    with pytest.raises(InvalidRequest, match="no MCP server 'nope'"):
        policy.chosen(Grant(("*",)), (ir.McpUse("nope"),), AVAILABLE, "explicit")


def test_a_client_tool_named_like_a_server_tool_is_refused() -> None:
    request = ir.Request("m", (), tools=(ir.Tool("test__add"),))
    with pytest.raises(InvalidRequest, match="test__add"):
        policy.with_server_tools(request, {"test__add": AVAILABLE["test__add"]})


MCP = {"type": "mcp", "server_label": "test", "require_approval": "never", "allowed_tools": ["add"]}


def test_openai_dialects_name_a_server_with_an_mcp_tool() -> None:
    body = {"model": "m", "input": "hi", "tools": [MCP, {"type": "function", "name": "f", "parameters": {}}]}
    request = responses.decode_request(body)
    assert request.mcp == (ir.McpUse("test", ("add",)),) and [t.name for t in request.tools] == ["f"]
    chat = openai_chat.decode_request({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                       "tools": [{**MCP, "allowed_tools": {"tool_names": ["add", "echo"]}}]})
    assert chat.mcp == (ir.McpUse("test", ("add", "echo")),) and chat.tools == ()


@pytest.mark.parametrize("change,field", [
    ({"server_url": "ftp://files.example/mcp"}, "tools[0].server_url"),
    ({"server_url": "https://x.example:port/mcp"}, "tools[0].server_url"),
    ({"connector_id": "connector_gmail"}, "tools[0].connector_id"),
    ({"server_url": "https://x.example/mcp", "headers": {"Host": "y"}}, "tools[0].headers"),
    ({"server_url": "https://x.example/mcp", "headers": {"X-A": "1\r\nX-B: 2"}}, "tools[0].headers"),
    ({"server_url": "https://x.example/mcp", "authorization": "two words"}, "tools[0].authorization"),
    ({"authorization": "token"}, "tools[0].authorization"),
    ({"require_approval": "always"}, "tools[0].require_approval"),
    ({"require_approval": None}, "tools[0].require_approval"),
    ({"headers": {"Authorization": "x"}}, "tools[0].headers"),
    ({"server_label": None}, "tools[0].server_label"),
])
def test_what_an_mcp_tool_may_not_ask_is_a_400_naming_the_field(change: dict, field: str) -> None:  # type: ignore[type-arg]
    tool = {k: v for k, v in {**MCP, **change}.items() if v is not None}
    with pytest.raises(InvalidRequest) as refused:
        responses.decode_request({"model": "m", "input": "hi", "tools": [tool]})
    assert refused.value.param == field


def test_anthropic_names_a_server_in_mcp_servers() -> None:
    base = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "mcp_toolset", "mcp_server_name": "test"}]}
    request = anthropic.decode_request({**base, "mcp_servers": [
        {"type": "url", "name": "test", "tool_configuration": {"allowed_tools": ["echo"]}},
        {"type": "url", "name": "off", "tool_configuration": {"enabled": False}}]})
    assert request.mcp == (ir.McpUse("test", ("echo",)),) and request.tools == ()
    with pytest.raises(InvalidRequest) as refused:
        anthropic.decode_request({**base, "mcp_servers": [{"type": "url", "name": "x", "authorization_token": "t"}]})
    assert refused.value.param == "mcp_servers[0].authorization_token"  # a tools worker's server keeps its own
    own = anthropic.decode_request({**base, "mcp_servers": [
        {"type": "url", "name": "x", "url": "https://mcp.example/sse", "authorization_token": "t0k"}]}).mcp[0]
    assert (own.url, own.headers, own.param) == ("https://mcp.example/sse", (("Authorization", "Bearer t0k"),),
                                                 "mcp_servers[0].url")
    assert "t0k" not in repr(own)  # credentials stay out of logs


def test_a_clients_own_server_is_read_with_its_credentials_and_checked_against_the_operators_list() -> None:
    tool = {**MCP, "server_label": "mine", "server_url": "https://mcp.example/v1/mcp", "headers": {"X-Org": "o-1"},
            "authorization": "t0k"}
    use = responses.decode_request({"model": "m", "input": "hi", "tools": [tool]}).mcp[0]
    assert (use.server, use.url, use.allowed_tools) == ("mine", "https://mcp.example/v1/mcp", ("add",))
    assert use.headers == (("X-Org", "o-1"), ("Authorization", "Bearer t0k")) and "t0k" not in repr(use)

    def check(patterns: tuple[str, ...], *uses: ir.McpUse, workers: frozenset[str] = frozenset()) -> list[ir.McpUse]:
        available = {f"{server}__t": {"name": f"{server}__t", "server": server} for server in workers}
        return client_servers.check(uses, ToolsConfig(client_servers=patterns), available)

    assert check(("https://mcp.example/*",), use) == [use]
    assert check((), ir.McpUse("test")) == []  # a tools worker's server, named: not this module's
    for patterns, uses, workers, says in [
        ((), (use,), (), "does not allow"),  # the default: no client's server is reached
        (("https://mcp.example/v2/*",), (use,), (), "does not allow"),
        (("https://mcp.example/*",), (use,), ("mine",), "taken"),  # one of the router's servers has that name
        (("https://mcp.example/*",), (use, use), (), "taken"),
        (("https://mcp.example/*",), (dataclasses.replace(use, server="my__own"),), (), "without '__'"),
    ]:
        with pytest.raises(InvalidRequest) as refused:
            check(patterns, *uses, workers=frozenset(workers))
        assert says in refused.value.message and refused.value.param == "tools[0].server_url"
