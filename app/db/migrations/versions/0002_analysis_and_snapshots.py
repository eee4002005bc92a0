"""ranking analysis cache, frozen leaderboards, result hashes

Revision ID: 0002
Revises: 0001

- ``phases.analysis_resamples`` / ``phases.analysis_seed``: the organizers' bootstrap
  settings (defaults 1000 and 0);
- ``results.sha256``: hash of the whole result document with its cases (NULL for rows
  written before this revision; the cache key falls back to their time of writing);
- ``analysis_cache``: computed analyses per phase and task, keyed by what they depend on;
- ``leaderboard_snapshots``: frozen leaderboards, at most one active per phase and task.

Self-contained on purpose: it never imports the application's models.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

JSON_TYPE = sa.JSON()  # not JSONB: it would reorder the keys of stored documents

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("phases", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("analysis_resamples", sa.Integer(), nullable=False, server_default="1000")
        )
        batch_op.add_column(
            sa.Column("analysis_seed", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sha256", sa.String(length=64), nullable=True))

    op.create_table(
        "analysis_cache",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("phase_id", sa.Integer(), nullable=False),
        sa.Column("task", sa.Integer(), nullable=False),
        sa.Column("key_sha256", sa.String(length=64), nullable=False),
        sa.Column("selection", sa.String(length=16), nullable=False),
        sa.Column("n_resamples", sa.Integer(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("payload", JSON_TYPE, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["phase_id"], ["phases.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("phase_id", "task", "key_sha256", name="uq_analysis_cache_key"),
    )

    op.create_table(
        "leaderboard_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("phase_id", sa.Integer(), nullable=False),
        sa.Column("task", sa.Integer(), nullable=False),
        sa.Column("selection", sa.String(length=16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("frozen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unfrozen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("board", JSON_TYPE, nullable=False),
        sa.Column("analysis", JSON_TYPE, nullable=True),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("evaluator_version", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["phase_id"], ["phases.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("leaderboard_snapshots", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_leaderboard_snapshots_phase_id"), ["phase_id"], unique=False
        )
        batch_op.create_index(
            "uq_leaderboard_snapshot_active",
            ["phase_id", "task"],
            unique=True,
            sqlite_where=sa.text("active"),
            postgresql_where=sa.text("active"),
        )


def downgrade() -> None:
    with op.batch_alter_table("leaderboard_snapshots", schema=None) as batch_op:
        batch_op.drop_index("uq_leaderboard_snapshot_active")
        batch_op.drop_index(batch_op.f("ix_leaderboard_snapshots_phase_id"))
    op.drop_table("leaderboard_snapshots")
    op.drop_table("analysis_cache")
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_column("sha256")
    with op.batch_alter_table("phases", schema=None) as batch_op:
        batch_op.drop_column("analysis_seed")
        batch_op.drop_column("analysis_resamples")
