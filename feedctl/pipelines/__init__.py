"""One module per job: orchestration over PostgreSQL and Redis, returning counts."""
