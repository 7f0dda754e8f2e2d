"""citizens' download links for their data ("mes données")

Revision ID: 0005_data_export_links
Revises: 0004_reports_privacy
Create Date: 2026-12-03 12:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_data_export_links"
down_revision = "0004_reports_privacy"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "guichet_data_export_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("conversation_id", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("downloads", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("guichet_data_export_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_guichet_data_export_links_conversation_id"), ["conversation_id"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("guichet_data_export_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_guichet_data_export_links_conversation_id"))
    op.drop_table("guichet_data_export_links")
