"""Clients over HTTP: Python client, terminal chat, web page. Planned in issue 8; nothing is
exported yet."""

__all__: list[str] = []
