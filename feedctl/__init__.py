"""feedctl: fan-out, ranking, caches and feed reads for a communities app."""

# The one place the version is written: the build reads it from here (pyproject.toml,
# [tool.hatch.version]). Keep this module free of imports so `--version` stays cheap.
__version__ = "0.1.0"
