"""feedctl: fan-out, ranking, caches and feed reads for a communities app."""

__version__ = "0.1.0"
