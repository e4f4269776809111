"""Moderations: the configured value models as an OpenAI-style moderation classifier."""
