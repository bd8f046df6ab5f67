"""Backfills: every score again under a new heuristic, in resumable shards."""
