"""Serving: the OpenAI-compatible server, the upstream LLM calls and the chat page."""
