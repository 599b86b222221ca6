"""Helpers the tests share: real components started for a test (the router and
workers as processes, loopback servers, certificates), test doubles named as such
(``cloud_double``, ``cursor_agent_double``, ``scripted_upstream``), and paths."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent  # the checkout
GOLDEN = TESTS / "golden"
