"""per-customer prices: an admin's rate or discount for one customer and one service

Revision ID: 0012_customer_prices
Revises: 0011_webhooks
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_customer_prices"
down_revision: str | None = "0011_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customer_prices",
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("service_id", sa.BigInteger(), nullable=False),
        sa.Column("rate_micros", sa.BigInteger(), nullable=True),
        sa.Column("discount_bp", sa.Integer(), nullable=True),
        sa.Column("set_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("(rate_micros IS NULL) <> (discount_bp IS NULL)", name="customer_prices_one_kind"),
        sa.CheckConstraint("rate_micros >= 0", name="customer_prices_rate"),
        sa.CheckConstraint("discount_bp BETWEEN 1 AND 10000", name="customer_prices_discount"),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.ForeignKeyConstraint(["service_id"], ["services.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("customer_id", "service_id"),
    )


def downgrade() -> None:
    op.drop_table("customer_prices")
