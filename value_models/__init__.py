"""Value models that score reasoning steps (safety, values, knowledge) and step-wise guided
decoding. Planned in issue 3; nothing is exported yet."""

__all__: list[str] = []
