"""money at the edges: what each provider order delivered and cost, units refunded, staff-only timeline
detail, and when an order next expects to act (for the stuck-order check)

Revision ID: 0005_money_edges
Revises: 0004_lifecycle
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_money_edges"
down_revision: str | None = "0004_lifecycle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("refunded_units", sa.Integer(), server_default="0", nullable=False))
    op.add_column("orders", sa.Column("next_action_at", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint("orders_refunded_units", "orders", "refunded_units BETWEEN 0 AND quantity")
    op.add_column("order_events", sa.Column("detail", sa.Text(), nullable=True))
    op.add_column("provider_submissions", sa.Column("delivered", sa.Integer(), nullable=True))
    op.add_column("provider_submissions", sa.Column("cost_micros", sa.BigInteger(), nullable=True))
    op.add_column("provider_submissions", sa.Column("provider_status", sa.String(length=20), nullable=True))
    op.add_column(
        "provider_submissions", sa.Column("provider_status_raw", sa.String(length=100), nullable=True)
    )
    op.add_column("provider_submissions", sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "provider_submissions", sa.Column("abandoned_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    for column in (
        "abandoned_at",
        "finished_at",
        "provider_status_raw",
        "provider_status",
        "cost_micros",
        "delivered",
    ):
        op.drop_column("provider_submissions", column)
    op.drop_column("order_events", "detail")
    op.drop_constraint("orders_refunded_units", "orders", type_="check")
    op.drop_column("orders", "next_action_at")
    op.drop_column("orders", "refunded_units")
