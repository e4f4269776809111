"""``POST /cot/edit``: continue from a user's corrected reasoning, and remember it."""
