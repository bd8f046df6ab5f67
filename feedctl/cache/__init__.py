"""Redis: the client, key names, and pipelined writes of cached feeds."""
