"""The third front end: the HTTP feed API that `feedctl serve` runs (FastAPI under uvicorn,
the `serve` extra)."""
