"""Judging jobs: the job function and the dispatchers that run it."""

from app.jobs.dispatcher import Dispatcher, LocalDispatcher, make_dispatcher
from app.jobs.runner import run_job

__all__ = ["Dispatcher", "LocalDispatcher", "make_dispatcher", "run_job"]
