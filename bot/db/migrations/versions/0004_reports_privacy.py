"""reports, complaints, their notifications, erasure requests

Revision ID: 0004_reports_privacy
Revises: 0003_faq_editor
Create Date: 2026-11-26 19:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_reports_privacy"
down_revision = "0003_faq_editor"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "guichet_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("place", sa.String(length=500), nullable=False),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("photos", sa.Text(), nullable=False),
        sa.Column("contact_kind", sa.String(length=8), nullable=True),
        sa.Column("contact", sa.String(length=255), nullable=True),
        sa.Column("consent_at", sa.DateTime(), nullable=True),
        sa.Column("conversation_id", sa.String(length=255), nullable=True),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("assigned_to", sa.Integer(), nullable=True),
        sa.Column("due_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("anonymised_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["assigned_to"], ["guichet_agents.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("reference"),
    )
    with op.batch_alter_table("guichet_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_guichet_requests_conversation_id"), ["conversation_id"], unique=False)
        batch_op.create_index("ix_guichet_requests_status_created", ["status", "created_at"], unique=False)
        batch_op.create_index("ix_guichet_requests_kind_created", ["kind", "created_at"], unique=False)

    op.create_table(
        "guichet_request_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("old_value", sa.String(length=64), nullable=True),
        sa.Column("new_value", sa.String(length=64), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["agent_id"], ["guichet_agents.id"]),
        sa.ForeignKeyConstraint(["request_id"], ["guichet_requests.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("guichet_request_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_guichet_request_events_request_id"), ["request_id"], unique=False)

    op.create_table(
        "guichet_request_notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.Column("conversation_id", sa.String(length=255), nullable=True),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_try_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["event_id"], ["guichet_request_events.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["request_id"], ["guichet_requests.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("guichet_request_notifications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_guichet_request_notifications_request_id"), ["request_id"], unique=False)
        batch_op.create_index("ix_guichet_request_notifications_status", ["status", "next_try_at"], unique=False)

    op.create_table(
        "guichet_erasure_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_key", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("done_at", sa.DateTime(), nullable=True),
        sa.Column("events_deleted", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("guichet_erasure_requests", schema=None) as batch_op:
        batch_op.create_index("ix_guichet_erasure_requests_status_due", ["status", "due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("guichet_erasure_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_guichet_erasure_requests_status_due")
    op.drop_table("guichet_erasure_requests")
    with op.batch_alter_table("guichet_request_notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_guichet_request_notifications_status")
        batch_op.drop_index(batch_op.f("ix_guichet_request_notifications_request_id"))
    op.drop_table("guichet_request_notifications")
    with op.batch_alter_table("guichet_request_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_guichet_request_events_request_id"))
    op.drop_table("guichet_request_events")
    with op.batch_alter_table("guichet_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_guichet_requests_kind_created")
        batch_op.drop_index("ix_guichet_requests_status_created")
        batch_op.drop_index(batch_op.f("ix_guichet_requests_conversation_id"))
    op.drop_table("guichet_requests")
