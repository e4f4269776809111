"""Chat completions: protocol, serving, routes."""
