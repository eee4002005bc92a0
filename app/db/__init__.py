"""Database layer: SQLAlchemy 2.0 models, engines/sessions and Alembic migrations."""

from app.db.migrate import upgrade
from app.db.session import get_engine, make_engine, session_factory, session_scope

__all__ = ["get_engine", "make_engine", "session_factory", "session_scope", "upgrade"]
