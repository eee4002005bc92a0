"""The dispatcher the settings ask for."""

from __future__ import annotations

import logging

from app.jobs.base import Dispatcher
from app.jobs.local import LocalDispatcher
from app.settings import Settings

log = logging.getLogger(__name__)


def make_dispatcher(settings: Settings) -> Dispatcher:
    if settings.dispatcher == "local":
        return LocalDispatcher(settings)
    if settings.dispatcher == "celery":
        try:
            from app.jobs.celery_dispatcher import CeleryDispatcher
        except ImportError as e:
            raise RuntimeError(
                f"HECKTOR_DISPATCHER=celery needs the worker extra ({e}); install "
                "hecktor-eval[worker], or use HECKTOR_DISPATCHER=local"
            ) from e
        return CeleryDispatcher(settings)
    raise RuntimeError(f"unknown dispatcher {settings.dispatcher!r}")
