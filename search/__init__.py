"""Deliberative search: backends, the search-read-reflect loop, result filtering and
confidence calibration. Planned in issue 4; nothing is exported yet."""

__all__: list[str] = []
