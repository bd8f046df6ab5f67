"""The HTTP feed API that `feedctl serve` runs: FastAPI over `feedctl.AsyncClient`.

Routes (docs/openapi.json has the schema, docs/decisions/0035 the reasons):
- GET /v1/users/{id}/feed, GET /v1/communities/{id}/feed: a page, the same JSON as
  `feedctl feed ... --json`;
- POST /v1/rebuilds, GET /v1/rebuilds/{id}: rebuilds, behind the configured bearer token;
- GET /healthz (the process answers), GET /readyz (PostgreSQL and Redis answer);
- GET /metrics: Prometheus text, from a registry of this app's own.

Every error is JSON `{"detail": "..."}`: 404 for an unknown id, 422 for a bad cursor,
limit or body, 401/403 for a missing or wrong token, 503 when PostgreSQL cannot be reached;
never a stack trace.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal, Self

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, model_validator

from feedctl import __version__
from feedctl.api.metrics import ApiMetrics, RequestMetrics
from feedctl.api.rebuilds import AlreadyRunning, RebuildRuns
from feedctl.client import DEFAULT_POOL_SIZE, AsyncClient
from feedctl.config import Settings
from feedctl.errors import (
    BadInputError,
    ConfigError,
    FeedctlError,
    LockedError,
    NotFoundError,
    ServiceUnavailableError,
)
from feedctl.read.pages import MAX_LIMIT
from feedctl.server_errors import as_feedctl_error

log = logging.getLogger("feedctl.api")

BIGINT_MIN = -(2**63)
BIGINT_MAX = 2**63 - 1
SHUTDOWN_WAIT_SECONDS = 60.0  # how long a shut-down waits for a rebuild's current chunk

FeedId = Annotated[int, Path(ge=BIGINT_MIN, le=BIGINT_MAX, description="The feed's id.")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")]
Cursor = Annotated[
    str | None,
    Query(
        pattern="^[A-Za-z0-9_-]+$",
        max_length=4096,
        description="The next_cursor of the previous page (opaque, signed base64url text).",
    ),
]


class Error(BaseModel):
    detail: str


class Item(BaseModel):
    post_id: int
    community_id: int
    author_id: int
    created_at: str = Field(description="ISO 8601 with its UTC offset.")
    score: float = Field(description="The rank key the walk orders by.")


class Page(BaseModel):
    items: list[Item]
    next_cursor: str | None = Field(description="The cursor of the next page; null at the end.")


class RebuildRequest(BaseModel):
    """`user` or `community` with an `id` (run within the request), or `all`: every feed,
    in the background; `resume` continues a run of every feed that was stopped."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["user", "community", "all"]
    id: int | None = Field(default=None, ge=BIGINT_MIN, le=BIGINT_MAX)
    resume: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.kind == "all" and self.id is not None:
            raise ValueError("a rebuild of all feeds takes no id")
        if self.kind != "all" and self.id is None:
            raise ValueError(f"a {self.kind} rebuild needs an id")
        if self.resume and self.kind != "all":
            raise ValueError("resume goes with kind all")
        return self


class RebuildCounts(BaseModel):
    users: int
    entries_before: int
    entries_after: int
    entries_removed: int
    entries_added: int
    entries_updated: int
    cached_feeds_rewritten: int
    cached_entries_before: int
    cached_entries_after: int
    uncached_feeds: int
    redis_failures: int
    resumed_after_user: int | None
    stopped: bool


class Rebuild(BaseModel):
    id: str
    kind: Literal["user", "community", "all"]
    target_id: int | None
    resume: bool
    status: Literal["running", "done", "stopped", "failed"]
    started_at: str
    finished_at: str | None
    users_total: int | None
    users_done: int
    error: str | None
    report: RebuildCounts | None


class Readiness(BaseModel):
    postgres: bool
    redis: bool


_bearer = HTTPBearer(auto_error=False, description="The api_token setting.")


async def feeds_of(request: Request) -> AsyncClient:
    """The client the app's lifespan opened (async: FastAPI would run a plain function on
    a worker thread for every request)."""
    client: AsyncClient = request.app.state.feeds
    return client


async def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """The configured api_token as a bearer token, compared in constant time."""
    token: str | None = request.app.state.api_token
    if token is None:
        raise _Refused(403, "rebuilds are disabled: no api_token is configured")
    if credentials is None:
        raise _Refused(401, "a bearer token is required")
    given = credentials.credentials.encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(given, token.encode("utf-8")):
        raise _Refused(403, "the bearer token is wrong")


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": Error} for code in codes}


_STATUS_OF = (
    (NotFoundError, 404),
    (BadInputError, 422),
    (ServiceUnavailableError, 503),
    (ConfigError, 503),  # e.g. a database with no cursor secret: not ready to serve
    (AlreadyRunning, 409),
    (LockedError, 409),
)


def status_of(error: FeedctlError) -> int:
    for kind, status in _STATUS_OF:
        if isinstance(error, kind):
            return status
    return 500


def create_app(
    settings: Settings,
    *,
    pool_size: int = DEFAULT_POOL_SIZE,
    timeout: float = 5.0,
) -> FastAPI:
    """The API over a client opened in the app's lifespan (and closed after the last
    in-flight request)."""
    metrics = ApiMetrics()
    runs = RebuildRuns()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        feeds = AsyncClient(
            settings, pool_size=pool_size, timeout=timeout, on_redis_failure=metrics.redis_failed
        )
        app.state.feeds = feeds
        try:
            yield
        finally:
            runs.stop(SHUTDOWN_WAIT_SECONDS)  # a rebuild of every feed stops after its chunk
            await feeds.close()

    app = FastAPI(
        title="feedctl",
        version=__version__,
        summary="Feed pages, rebuilds and health of the feed subsystem of a communities app.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.state.api_token = settings.api_token

    @app.exception_handler(_Refused)
    async def refused(request: Request, exc: _Refused) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    @app.exception_handler(FeedctlError)
    async def feedctl_error(request: Request, exc: FeedctlError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=status_of(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        error = as_feedctl_error(exc)
        if error is None:
            log.exception("unexpected error on %s %s", request.method, request.url.path)
            return JSONResponse({"detail": "internal error"}, status_code=500)
        return JSONResponse({"detail": error.message}, status_code=status_of(error))

    @app.get(
        "/v1/users/{user_id}/feed",
        response_model=Page,
        responses=_errors(404, 422, 503),
        summary="A page of a user's home feed",
    )
    async def user_feed(
        user_id: FeedId,
        feeds: Annotated[AsyncClient, Depends(feeds_of)],
        limit: Limit = 20,
        cursor: Cursor = None,
    ) -> Response:
        page = await feeds.user_feed(user_id, limit, cursor)
        metrics.page_source("user", page.source, page.redis_alone)
        return JSONResponse(page.as_json())

    @app.get(
        "/v1/communities/{community_id}/feed",
        response_model=Page,
        responses=_errors(404, 422, 503),
        summary="A page of a community's feed",
    )
    async def community_feed(
        community_id: FeedId,
        feeds: Annotated[AsyncClient, Depends(feeds_of)],
        limit: Limit = 20,
        cursor: Cursor = None,
    ) -> Response:
        page = await feeds.community_feed(community_id, limit, cursor)
        metrics.page_source("community", page.source, page.redis_alone)
        return JSONResponse(page.as_json())

    @app.post(
        "/v1/rebuilds",
        response_model=Rebuild,
        status_code=200,
        responses={
            202: {"model": Rebuild, "description": "A rebuild of every feed, started"},
            **_errors(401, 403, 404, 409, 422, 503),
        },
        dependencies=[Depends(require_token)],
        summary="Rebuild a user's feed, a community's, or every feed (in the background)",
    )
    async def start_rebuild(
        body: RebuildRequest, feeds: Annotated[AsyncClient, Depends(feeds_of)]
    ) -> Response:
        if body.kind == "all":
            record = runs.start_all(feeds.sync, body.resume)
            return JSONResponse(record.as_json(), status_code=202)
        assert body.id is not None
        if body.kind == "user":
            report = await feeds.rebuild_user(body.id)
        else:
            report = await feeds.rebuild_community(body.id)
        record = runs.new(body.kind, body.id)
        record.finish(report)
        return JSONResponse(record.as_json())

    @app.get(
        "/v1/rebuilds/{rebuild_id}",
        response_model=Rebuild,
        responses=_errors(401, 403, 404, 422),
        dependencies=[Depends(require_token)],
        summary="A rebuild this server started",
    )
    async def rebuild_status(rebuild_id: Annotated[str, Path(max_length=64)]) -> Response:
        record = runs.get(rebuild_id)
        if record is None:
            raise NotFoundError(f"no rebuild {rebuild_id} on this server")
        return JSONResponse(record.as_json())

    @app.get("/healthz", summary="The process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "A server does not answer"}},
        summary="PostgreSQL and Redis answer",
    )
    async def readyz(feeds: Annotated[AsyncClient, Depends(feeds_of)]) -> Response:
        ready = await feeds.readiness()
        body = {"postgres": ready.postgres, "redis": ready.redis}
        return JSONResponse(body, status_code=200 if ready.ready else 503)

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
        summary="Prometheus metrics of this process",
    )
    async def metrics_text() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


class _Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", ""))
    return "; ".join(parts) or "invalid request"
