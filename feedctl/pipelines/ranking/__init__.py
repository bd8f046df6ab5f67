"""Ranking: scoring posts, the nightly rescore, heuristic versions and explanations."""
