"""One package per stage (fanout, ranking, cache), plus expire and demo: orchestration
over PostgreSQL and Redis, returning counts."""
