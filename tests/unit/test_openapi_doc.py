"""docs/openapi.json is the schema `feedctl serve` publishes at /openapi.json today: a route or
model changed without `make docs` fails here."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "openapi_doc", ROOT / "scripts" / "openapi_doc.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


openapi_doc = _load()


def test_the_checked_in_schema_is_what_make_docs_writes() -> None:
    current = (ROOT / "docs" / "openapi.json").read_text(encoding="utf-8")
    assert current == openapi_doc.schema_text(), "docs/openapi.json is out of date: run `make docs`"


def test_the_schema_has_exactly_the_routes_of_the_issue() -> None:
    schema = json.loads(openapi_doc.schema_text())
    routes = {(path, method) for path, item in schema["paths"].items() for method in item}
    assert routes == {
        ("/v1/users/{user_id}/feed", "get"),
        ("/v1/communities/{community_id}/feed", "get"),
        ("/v1/rebuilds", "post"),
        ("/v1/rebuilds/{rebuild_id}", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    }
    rebuild = schema["paths"]["/v1/rebuilds"]["post"]
    assert rebuild["security"] == [{"HTTPBearer": []}]
    page = schema["paths"]["/v1/users/{user_id}/feed"]["get"]
    assert set(page["responses"]) == {"200", "404", "422", "503"}
