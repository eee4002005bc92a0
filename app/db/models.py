"""SQLAlchemy 2.0 models. The submission row is the source of truth for its state.

States of a submission: ``queued -> running -> scored | failed`` (a dry run ends in
``valid`` instead of ``scored``). Results and per-case rows are replaced together, in
one transaction, by the judging job.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# plain JSON (not JSONB) on PostgreSQL: JSONB reorders keys, and the order of the
# per-case columns and of the metrics is part of what a participant sees.
JSONType = JSON()


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


# Submission states
QUEUED = "queued"
RUNNING = "running"
SCORED = "scored"
VALID = "valid"  # a dry run that passed validation
FAILED = "failed"
RECEIVED = "received"
STATES = (RECEIVED, QUEUED, RUNNING, SCORED, VALID, FAILED)
PENDING_STATES = (QUEUED, RUNNING)

# Phase.case_rows
CASE_ROWS_SCORES = "scores"
CASE_ROWS_NONE = "none"
CASE_ROWS = (CASE_ROWS_SCORES, CASE_ROWS_NONE)
# Phase.kind: what a phase judges; Submission.kind: what an upload is
KIND_PREDICTIONS = "predictions"  # prediction archives and tables
KIND_ALGORITHM = "algorithm"  # inference containers, run case by case on hidden inputs
KIND_BOTH = "both"  # either, on one leaderboard
PHASE_KINDS = (KIND_PREDICTIONS, KIND_ALGORITHM, KIND_BOTH)
SUBMISSION_KINDS = (KIND_PREDICTIONS, KIND_ALGORITHM)
# Submission.priority
PRIORITY_NORMAL = 0
PRIORITY_RESCORE = 10


class Phase(Base):
    __tablename__ = "phases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    is_open: Mapped[bool] = mapped_column(Boolean, default=True)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)  # scores withheld from teams
    leaderboard_public: Mapped[bool] = mapped_column(Boolean, default=True)
    daily_limit: Mapped[int] = mapped_column(Integer, default=5)
    selection: Mapped[str] = mapped_column(String(16), default="best")  # best | latest
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # ranking analysis: bootstrap resamples and seed, chosen by the organizers
    analysis_resamples: Mapped[int] = mapped_column(Integer, default=1000, server_default="1000")
    analysis_seed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # what a team sees of its own per-case rows: CASE_ROWS_SCORES (its predictions and
    # per-case scores, never a ground-truth value) or CASE_ROWS_NONE (no per-case rows)
    case_rows: Mapped[str] = mapped_column(String(16), default="scores", server_default="scores")
    # per-centre results of smaller centres are shown to organizers only
    min_center_cases: Mapped[int] = mapped_column(Integer, default=5, server_default="5")
    # per team, task and 24 hours: dry runs and failed submissions, in count and bytes
    dry_run_limit: Mapped[int] = mapped_column(Integer, default=20, server_default="20")
    dry_run_bytes: Mapped[int] = mapped_column(
        BigInteger, default=8 << 30, server_default=str(8 << 30)
    )
    failed_limit: Mapped[int] = mapped_column(Integer, default=10, server_default="10")
    failed_bytes: Mapped[int] = mapped_column(
        BigInteger, default=8 << 30, server_default=str(8 << 30)
    )
    # uploads of failed submissions and dry runs are deleted after this many days
    retention_days: Mapped[int] = mapped_column(Integer, default=7, server_default="7")

    # what the phase judges (PHASE_KINDS); for algorithms, the hidden inputs and the
    # limits each case runs under
    kind: Mapped[str] = mapped_column(
        String(16), default="predictions", server_default="predictions"
    )
    # the converted case inputs (relative to the data dir; None: no inputs imported)
    inputs_dir: Mapped[str | None] = mapped_column(Text, nullable=True)
    inputs_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    n_inputs: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    case_seconds: Mapped[int] = mapped_column(Integer, default=600, server_default="600")
    case_memory_mb: Mapped[int] = mapped_column(Integer, default=4096, server_default="4096")
    case_cpus: Mapped[float] = mapped_column(Float, default=1.0, server_default="1.0")
    case_pids: Mapped[int] = mapped_column(Integer, default=128, server_default="128")
    case_gpu: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    case_tmp_mb: Mapped[int] = mapped_column(Integer, default=512, server_default="512")
    case_output_mb: Mapped[int] = mapped_column(Integer, default=1024, server_default="1024")
    image_max_bytes: Mapped[int] = mapped_column(
        BigInteger, default=10 << 30, server_default=str(10 << 30)
    )
    parallel_cases: Mapped[int] = mapped_column(Integer, default=2, server_default="2")
    # grand-challenge's rule: one failed case fails the submission; False: every case is
    # run and a submission is scored on its complete cases only when all of them passed
    fail_fast: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())

    tasks: Mapped[list[PhaseTask]] = relationship(
        back_populates="phase", order_by="PhaseTask.task", cascade="all, delete-orphan"
    )


class PhaseTask(Base):
    """One task of a phase with its imported ground truth and scoring protocol."""

    __tablename__ = "phase_tasks"
    __table_args__ = (UniqueConstraint("phase_id", "task", name="uq_phase_task"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phase_id: Mapped[int] = mapped_column(ForeignKey("phases.id", ondelete="CASCADE"))
    task: Mapped[int] = mapped_column(Integer)
    gt_dir: Mapped[str] = mapped_column(Text)  # relative to the data dir
    gt_sha256: Mapped[str] = mapped_column(String(64))
    protocol_json: Mapped[str] = mapped_column(Text)
    protocol_sha256: Mapped[str] = mapped_column(String(64))
    n_cases: Mapped[int] = mapped_column(Integer)
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    phase: Mapped[Phase] = relationship(back_populates="tasks")
    cases: Mapped[list[GroundTruthCase]] = relationship(
        cascade="all, delete-orphan", order_by="GroundTruthCase.patient_id"
    )


class GroundTruthCase(Base):
    __tablename__ = "ground_truth_cases"
    __table_args__ = (UniqueConstraint("phase_task_id", "patient_id", name="uq_gt_case"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phase_task_id: Mapped[int] = mapped_column(ForeignKey("phase_tasks.id", ondelete="CASCADE"))
    patient_id: Mapped[str] = mapped_column(String(200))
    center: Mapped[str | None] = mapped_column(String(100), nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    file: Mapped[str | None] = mapped_column(Text, nullable=True)  # relative to the data dir


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiToken(Base):
    """A bearer token, stored only as its SHA-256. Role ``organizer`` or ``team``."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    team_id: Mapped[int | None] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    team: Mapped[Team | None] = relationship()


class Submission(Base):
    __tablename__ = "submissions"
    __table_args__ = (
        Index("ix_submissions_quota", "team_id", "phase_id", "task", "submitted_at"),
        Index("ix_submissions_status", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    phase_id: Mapped[int] = mapped_column(ForeignKey("phases.id", ondelete="CASCADE"))
    task: Mapped[int] = mapped_column(Integer)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    # SUBMISSION_KINDS: a prediction archive/table, or an algorithm's image tarball
    kind: Mapped[str] = mapped_column(
        String(16), default="predictions", server_default="predictions"
    )
    status: Mapped[str] = mapped_column(String(16), default=RECEIVED)
    filename: Mapped[str] = mapped_column(String(255), default="")
    archive_path: Mapped[str] = mapped_column(Text, default="")  # relative to the data dir
    archive_type: Mapped[str] = mapped_column(String(16), default="")
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    # what the judge is doing, for people watching (e.g. "running case 3 of 50")
    progress_note: Mapped[str] = mapped_column(String(200), default="", server_default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # 0 normal; higher runs after every lower one (organizers' re-scoring)
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # when retention deleted the stored upload (failed submissions and dry runs)
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    errors: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType, nullable=True)
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    team: Mapped[Team] = relationship()
    phase: Mapped[Phase] = relationship()
    result: Mapped[Result | None] = relationship(
        back_populates="submission", uselist=False, cascade="all, delete-orphan"
    )


class Result(Base):
    """The result document of a scored submission, without its cases."""

    __tablename__ = "results"

    submission_id: Mapped[int] = mapped_column(
        ForeignKey("submissions.id", ondelete="CASCADE"), primary_key=True
    )
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType)
    document: Mapped[dict[str, Any]] = mapped_column(JSONType)
    protocol_sha256: Mapped[str] = mapped_column(String(64))
    ground_truth_sha256: Mapped[str] = mapped_column(String(64))
    evaluator_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # SHA-256 of the canonical JSON of the whole document with its cases (None: written
    # before revision 0002); part of the analysis cache key
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)

    submission: Mapped[Submission] = relationship(back_populates="result")


class CaseResult(Base):
    __tablename__ = "case_results"
    __table_args__ = (UniqueConstraint("submission_id", "idx", name="uq_case_result"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    submission_id: Mapped[int] = mapped_column(
        ForeignKey("submissions.id", ondelete="CASCADE"), index=True
    )
    idx: Mapped[int] = mapped_column(Integer)
    patient_id: Mapped[str] = mapped_column(String(200))
    center: Mapped[str | None] = mapped_column(String(100), nullable=True)
    record: Mapped[dict[str, Any]] = mapped_column(JSONType)


class AnalysisCache(Base):
    """A computed ranking analysis of one phase and task (bootstrap, rank stability,
    per-centre results), derived from stored per-case rows only.

    ``key_sha256`` hashes everything the analysis depends on: the leaderboard's
    submission ids with their result hashes, the ground-truth and protocol hashes, the
    number of resamples, the seed and the analysis code's version. A lookup recomputes
    the key from the current rows, so a stale entry can never match; entries of a phase
    and task are also deleted in the transaction that writes a result of that phase and
    task (``app.services.replace_result``), which keeps the table small.
    """

    __tablename__ = "analysis_cache"
    __table_args__ = (
        UniqueConstraint("phase_id", "task", "key_sha256", name="uq_analysis_cache_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phase_id: Mapped[int] = mapped_column(ForeignKey("phases.id", ondelete="CASCADE"))
    task: Mapped[int] = mapped_column(Integer)
    key_sha256: Mapped[str] = mapped_column(String(64))
    selection: Mapped[str] = mapped_column(String(16))
    n_resamples: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LeaderboardSnapshot(Base):
    """A frozen leaderboard of one phase and task: the rows (each with its submission,
    ground-truth and protocol hashes and evaluator version) and the analysis, as they
    were when an organizer froze the phase. Served instead of the live board while
    ``active``; never edited afterwards (unfreezing only clears ``active``).
    """

    __tablename__ = "leaderboard_snapshots"
    __table_args__ = (
        Index(
            "uq_leaderboard_snapshot_active",
            "phase_id",
            "task",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phase_id: Mapped[int] = mapped_column(ForeignKey("phases.id", ondelete="CASCADE"), index=True)
    task: Mapped[int] = mapped_column(Integer)
    selection: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    frozen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    unfrozen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    board: Mapped[dict[str, Any]] = mapped_column(JSONType)
    analysis: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    content_sha256: Mapped[str] = mapped_column(String(64))
    evaluator_version: Mapped[str] = mapped_column(String(32))


class WebSession(Base):
    """A signed-in browser: the cookie holds a random id whose SHA-256 is stored here,
    never the API token. Logout or a revoked token ends it (``revoked_at``)."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sid_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    team_id: Mapped[int | None] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), nullable=True
    )
    token_sha256: Mapped[str] = mapped_column(String(64))  # the token that signed in
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
