"""Offline evaluation of heuristics against engagement: pure Polars and NumPy, no I/O.

`metrics` ranks each (moment, user) query's candidates with the production rank key and
scores the ranking against the engagement that followed; `bootstrap` turns per-query
values into intervals and paired differences; `search` draws coefficients to try.
"""
