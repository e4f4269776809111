"""``/v1/memory``: a tenant's stored chain-of-thought corrections, and their recall."""
