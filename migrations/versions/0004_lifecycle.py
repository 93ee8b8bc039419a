"""order lifecycle: timeline events, refills, provider slots (capacity queue), note and refill deadline

Revision ID: 0004_lifecycle
Revises: 0003_providers
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_lifecycle"
down_revision: str | None = "0003_providers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("note", sa.Text(), server_default="", nullable=False))
    op.add_column("orders", sa.Column("refill_deadline", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "order_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("order_id", "seq", name="order_events_seq"),
    )
    op.create_table(
        "refills",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("refill_no", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('Pending', 'In progress', 'Completed', 'Rejected', 'Error')", name="refills_status"
        ),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("order_id", "refill_no", name="refills_order_no"),
    )
    op.create_index("ix_refills_order_id", "refills", ["order_id"])
    op.create_table(
        "provider_slots",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("provider_id", sa.BigInteger(), nullable=False),
        sa.Column("workflow_id", sa.String(length=100), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"]),
        sa.ForeignKeyConstraint(["provider_id"], ["providers.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("order_id", "provider_id", name="provider_slots_order"),
    )
    op.create_index(
        "provider_slots_waiting",
        "provider_slots",
        ["provider_id", "id"],
        postgresql_where=sa.text("granted_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("provider_slots_waiting", table_name="provider_slots")
    op.drop_table("provider_slots")
    op.drop_index("ix_refills_order_id", table_name="refills")
    op.drop_table("refills")
    op.drop_table("order_events")
    op.drop_column("orders", "refill_deadline")
    op.drop_column("orders", "note")
