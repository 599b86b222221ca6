"""Coding-agent CLIs (Claude Code, Codex, Cursor) as the "cli" tier: a pure codec per
CLI (:mod:`.claude_code`, :mod:`.codex_exec`, :mod:`.cursor_agent`, sharing :mod:`.cli`
and :mod:`.transcript`), and :mod:`.provider`, which runs them as supervised children."""
