"""Ingestion jobs and their per-document items; index write leases; document origins.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("indexes") as batch:
        batch.add_column(sa.Column("writer_job_id", sa.String(32), nullable=True))
        batch.add_column(
            sa.Column("writer_heartbeat_at", sa.DateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("origin", sa.Text(), nullable=True))
    op.create_table(
        "ingestion_jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("index_name", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("refresh_interval_s", sa.Integer(), nullable=True),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("run", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(128), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_ingestion_jobs_index_name", "ingestion_jobs", ["index_name"])
    op.create_index("ix_ingestion_jobs_status", "ingestion_jobs", ["status"])
    op.create_table(
        "ingestion_job_items",
        sa.Column(
            "job_id",
            sa.String(32),
            sa.ForeignKey("ingestion_jobs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("doc_id", sa.String(512), primary_key=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ingestion_job_items")
    op.drop_index("ix_ingestion_jobs_status", "ingestion_jobs")
    op.drop_index("ix_ingestion_jobs_index_name", "ingestion_jobs")
    op.drop_table("ingestion_jobs")
    with op.batch_alter_table("documents") as batch:
        batch.drop_column("origin")
    with op.batch_alter_table("indexes") as batch:
        batch.drop_column("writer_heartbeat_at")
        batch.drop_column("writer_job_id")
