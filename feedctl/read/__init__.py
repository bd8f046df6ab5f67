"""Feed queries for app servers and operators: cursor-paginated, cache first."""
