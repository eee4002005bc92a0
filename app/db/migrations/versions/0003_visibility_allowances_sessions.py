"""per-case visibility, judging allowances, retention, fair scheduling, web sessions

Revision ID: 0003
Revises: 0002

- ``phases.case_rows``: what a team sees of its own per-case rows (``scores``: its
  prediction and per-case scores, no ground-truth value; ``none``: no per-case rows);
- ``phases.min_center_cases``: per-centre results of centres with fewer cases are shown
  to organizers only;
- ``phases.dry_run_limit`` / ``dry_run_bytes`` and ``failed_limit`` / ``failed_bytes``:
  what a team may spend per task and 24 hours on dry runs and on failed submissions;
- ``phases.retention_days``: how long uploads of failed submissions and dry runs are kept;
- ``submissions.priority`` (0 normal, higher runs later: organizers' re-scoring) and
  ``submissions.purged_at`` (when retention deleted the upload);
- ``submissions.size_bytes`` becomes a 64-bit integer (uploads may exceed 2 GiB);
- ``web_sessions``: server-side sessions of the HTML pages (the cookie holds a random
  id, never the API token; logout revokes the row).

Self-contained on purpose: it never imports the application's models.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

GIB = 1 << 30


def upgrade() -> None:
    with op.batch_alter_table("phases", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("case_rows", sa.String(length=16), nullable=False, server_default="scores")
        )
        batch_op.add_column(
            sa.Column("min_center_cases", sa.Integer(), nullable=False, server_default="5")
        )
        batch_op.add_column(
            sa.Column("dry_run_limit", sa.Integer(), nullable=False, server_default="20")
        )
        batch_op.add_column(
            sa.Column("dry_run_bytes", sa.BigInteger(), nullable=False, server_default=str(8 * GIB))
        )
        batch_op.add_column(
            sa.Column("failed_limit", sa.Integer(), nullable=False, server_default="10")
        )
        batch_op.add_column(
            sa.Column("failed_bytes", sa.BigInteger(), nullable=False, server_default=str(8 * GIB))
        )
        batch_op.add_column(
            sa.Column("retention_days", sa.Integer(), nullable=False, server_default="7")
        )
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.alter_column(
            "size_bytes", existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=False
        )

    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sid_sha256", sa.String(length=64), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sid_sha256"),
    )


def downgrade() -> None:
    op.drop_table("web_sessions")
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.alter_column(
            "size_bytes", existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=False
        )
        batch_op.drop_column("purged_at")
        batch_op.drop_column("priority")
    with op.batch_alter_table("phases", schema=None) as batch_op:
        for name in (
            "retention_days",
            "failed_bytes",
            "failed_limit",
            "dry_run_bytes",
            "dry_run_limit",
            "min_center_cases",
            "case_rows",
        ):
            batch_op.drop_column(name)
