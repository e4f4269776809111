"""`safework-train`: the SafeLadder stages. Planned in issues 6 and 7; nothing is exported
yet."""

__all__: list[str] = []
