"""algorithm phases: participants' inference containers run case by case

Revision ID: 0004
Revises: 0003

- ``phases.kind``: ``predictions`` (archives and tables), ``algorithm`` (image
  tarballs run on hidden inputs) or ``both``;
- ``phases.inputs_dir`` / ``inputs_sha256`` / ``n_inputs``: the cases' inputs converted
  to the container layout, kept hidden like the ground truth;
- the limits each case runs under (``case_seconds``, ``case_memory_mb``, ``case_cpus``,
  ``case_pids``, ``case_gpu``, ``case_tmp_mb``, ``case_output_mb``), the image size cap
  (``image_max_bytes``), the cases run at once (``parallel_cases``) and whether the first
  failed case fails the submission (``fail_fast``);
- ``submissions.kind``: ``predictions`` or ``algorithm``; ``submissions.progress_note``:
  what the judge is doing (e.g. which case runs).

Self-contained on purpose: it never imports the application's models.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

GIB = 1 << 30
PHASE_COLUMNS = (
    "kind",
    "inputs_dir",
    "inputs_sha256",
    "n_inputs",
    "case_seconds",
    "case_memory_mb",
    "case_cpus",
    "case_pids",
    "case_gpu",
    "case_tmp_mb",
    "case_output_mb",
    "image_max_bytes",
    "parallel_cases",
    "fail_fast",
)


def upgrade() -> None:
    with op.batch_alter_table("phases", schema=None) as b:
        b.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="predictions")
        )
        b.add_column(sa.Column("inputs_dir", sa.Text(), nullable=True))
        b.add_column(sa.Column("inputs_sha256", sa.String(length=64), nullable=True))
        b.add_column(sa.Column("n_inputs", sa.Integer(), nullable=False, server_default="0"))
        b.add_column(sa.Column("case_seconds", sa.Integer(), nullable=False, server_default="600"))
        b.add_column(
            sa.Column("case_memory_mb", sa.Integer(), nullable=False, server_default="4096")
        )
        b.add_column(sa.Column("case_cpus", sa.Float(), nullable=False, server_default="1.0"))
        b.add_column(sa.Column("case_pids", sa.Integer(), nullable=False, server_default="128"))
        b.add_column(sa.Column("case_gpu", sa.Boolean(), nullable=False, server_default=sa.false()))
        b.add_column(sa.Column("case_tmp_mb", sa.Integer(), nullable=False, server_default="512"))
        b.add_column(
            sa.Column("case_output_mb", sa.Integer(), nullable=False, server_default="1024")
        )
        b.add_column(
            sa.Column(
                "image_max_bytes", sa.BigInteger(), nullable=False, server_default=str(10 * GIB)
            )
        )
        b.add_column(sa.Column("parallel_cases", sa.Integer(), nullable=False, server_default="2"))
        b.add_column(sa.Column("fail_fast", sa.Boolean(), nullable=False, server_default=sa.true()))
    with op.batch_alter_table("submissions", schema=None) as b:
        b.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="predictions")
        )
        b.add_column(
            sa.Column("progress_note", sa.String(length=200), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("submissions", schema=None) as b:
        b.drop_column("progress_note")
        b.drop_column("kind")
    with op.batch_alter_table("phases", schema=None) as b:
        for name in reversed(PHASE_COLUMNS):
            b.drop_column(name)
