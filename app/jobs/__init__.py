"""Judging jobs: the job function and the dispatchers that run it."""

from app.jobs.base import Dispatcher
from app.jobs.factory import make_dispatcher
from app.jobs.local import LocalDispatcher
from app.jobs.runner import run_job

__all__ = ["Dispatcher", "LocalDispatcher", "make_dispatcher", "run_job"]
