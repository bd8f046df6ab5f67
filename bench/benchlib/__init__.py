"""Helpers shared by the benchmark scripts in bench/ (not a benchmark itself).

Kept in a package so that `make bench` (which runs bench/*.py) does not run it.
"""
