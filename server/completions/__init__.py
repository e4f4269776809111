"""Text completions: protocol, serving, routes."""
