"""Pure scoring: the heuristic file model and Polars expressions. No I/O to servers."""
