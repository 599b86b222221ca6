"""Auxot: a self-hosted inference router (OpenAI Chat, Anthropic Messages, OpenAI Responses)."""

__version__ = "0.1.0"
