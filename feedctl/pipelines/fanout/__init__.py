"""Fan-out: events into feeds in PostgreSQL, then the cache writes they call for."""
