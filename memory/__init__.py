"""Error-vector memory of chain-of-thought corrections (FAISS index over a durable store).
Planned in issue 5; nothing is exported yet."""

__all__: list[str] = []
