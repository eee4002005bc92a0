"""The application factory. ``create_app(settings)`` wires the API, the pages, the
database (migrated at start-up) and the dispatcher (which re-queues unfinished jobs)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

import evaluator
from app.api import (
    admin,
    algorithm_logs,
    analysis,
    error_handlers,
    freeze,
    leaderboards,
    submissions,
)
from app.api.middleware import SecurityHeaders
from app.db.migrate import upgrade
from app.db.session import make_engine, read_only, session_factory, session_scope
from app.jobs.base import Dispatcher
from app.jobs.factory import make_dispatcher
from app.jobs.local import LocalDispatcher
from app.jobs.retention import RetentionThread
from app.jobs.sweeper import Sweeper
from app.ratelimit import AuthFailureLimiter
from app.services.board_cache import BoardCache
from app.settings import Settings, get_settings
from app.web import pages
from app.web.warm import PageWarmer

log = logging.getLogger(__name__)

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

DESCRIPTION = """\
Evaluation service for HECKTOR-style PET/CT challenges.

Authenticate with `Authorization: Bearer <token>`: the organizer token (from
`HECKTOR_ORGANIZER_TOKEN` or `hecktor-eval admin init`) or a team token (from
`hecktor-eval admin team create`). Errors are JSON `{"detail": ..., "errors": [...]}`.
"""


async def _open_database(app: FastAPI, settings: Settings) -> Engine:
    """Migrate the database and keep its session factories in ``app.state``."""
    engine = make_engine(settings.db_url)
    await run_in_threadpool(upgrade, engine)
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.state.read_sessions = session_factory(read_only(engine))
    return engine


async def _requeue_unfinished(sessions: sessionmaker[Session], d: Dispatcher) -> None:
    """Hand the submissions left unfinished by an earlier run to the dispatcher again."""

    def _recover() -> list[int]:
        with session_scope(sessions) as s:
            return d.recover_pending(s)

    ids = await run_in_threadpool(_recover)
    for sid in ids:
        d.submit(sid)
    if ids:
        log.info("re-queued %d unfinished submission(s) at start-up", len(ids))


def report_runtime(settings: Settings) -> str | None:
    """Log which container runtime runs algorithm submissions here, or why none can;
    returns the runtime's name (None: algorithm submissions fail as platform failures,
    refunded, until one is installed)."""
    from app.algorithms.runtime import RuntimeUnavailable, detect_runtime

    try:
        runtime = detect_runtime(settings.container_runtime)
    except RuntimeUnavailable as e:
        log.warning("algorithm submissions cannot be judged on this machine: %s", e)
        return None
    log.info("algorithm submissions run with %s", runtime.name)
    return str(runtime.name)


def _lifespan(settings: Settings, dispatcher: Dispatcher | None) -> Lifespan:
    """Start-up and shut-down: database, dispatcher (started and stopped here unless
    passed in), recovery of unfinished jobs, the sweeper and the retention thread."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.ensure_dirs()
        engine = await _open_database(app, settings)
        d = dispatcher or make_dispatcher(settings)
        if dispatcher is None:
            d.start()
        app.state.dispatcher = d
        sweeps = Sweeper(settings, app.state.sessions, d)
        await run_in_threadpool(sweeps.startup)
        await _requeue_unfinished(app.state.sessions, d)
        log.info(
            "hecktor-eval service ready: data in %s, database %s, dispatcher %s",
            settings.data_dir,
            engine.url.render_as_string(hide_password=True),
            d.name,
        )
        sweeper = (
            asyncio.create_task(sweeps.run(settings.sweep_interval))
            if settings.sweep_interval > 0
            else None
        )
        if d.name == "local" and settings.container_runtime != "none":
            threading.Thread(  # a runtime check takes a moment: never delay serving
                target=report_runtime, args=(settings,), name="runtime-check", daemon=True
            ).start()
        retention = RetentionThread(app.state.sessions, settings)  # expired uploads
        retention.start()
        warmer = PageWarmer(app.state.sessions)  # first page views as fast as later ones
        warmer.start()
        if isinstance(d, LocalDispatcher):
            d.on_finished = warmer.poke
        app.state.page_warmer = warmer
        try:
            yield
        finally:
            warmer.stop()
            retention.stop()
            if sweeper is not None:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            if dispatcher is None:
                d.shutdown(wait=False)
            engine.dispose()

    return lifespan


def _include_routes(app: FastAPI) -> None:
    app.include_router(submissions.router)
    app.include_router(algorithm_logs.router)
    app.include_router(leaderboards.router)
    app.include_router(admin.router)
    app.include_router(analysis.router)
    app.include_router(freeze.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}


def create_app(
    settings: Settings | None = None, *, dispatcher: Dispatcher | None = None
) -> FastAPI:
    """Build the service. A ``dispatcher`` passed in is started/stopped by its owner."""
    settings = settings or get_settings()
    app = FastAPI(
        title="hecktor-eval",
        version=evaluator.__version__,
        description=DESCRIPTION,
        lifespan=_lifespan(settings, dispatcher),
        openapi_url="/openapi.json",
        docs_url=None,  # Swagger UI and ReDoc load from a CDN; the pages use no external assets
        redoc_url=None,
    )
    app.state.settings = settings

    def openapi() -> dict[str, Any]:
        """The document built from the routes, with this server's upload limits."""
        if app.openapi_schema is None:
            app.openapi_schema = submissions.document_upload_limits(
                FastAPI.openapi(app), settings.max_upload_bytes
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.auth_limiter = AuthFailureLimiter(
        settings.auth_failure_limit, settings.auth_failure_window
    )
    app.state.board_cache = BoardCache()
    error_handlers.install(app, error_page=pages.error_page)
    _include_routes(app)
    app.add_middleware(
        SecurityHeaders, public_https=urlsplit(settings.public_url).scheme == "https"
    )
    return app
