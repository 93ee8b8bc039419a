"""drip-feed runs with ids of their own (from the orders' id sequence), as API v2 resellers track them

Revision ID: 0008_drip_feed_runs
Revises: 0007_ended_order_refunds
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_drip_feed_runs"
down_revision: str | None = "0007_ended_order_refunds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "drip_feed_runs",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("run_no", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("delivered", sa.Integer(), server_default="0", nullable=False),
        sa.Column("status", sa.String(length=20), server_default="Pending", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("order_id", "run_no", name="drip_feed_runs_run"),
    )
    op.create_index(op.f("ix_drip_feed_runs_order_id"), "drip_feed_runs", ["order_id"], unique=False)
    # Drip-feed orders placed before: their runs get ids now; what they delivered is projected by their
    # workflow's next write (an order already ended keeps Pending runs: its total is on the order).
    op.execute(
        """
        INSERT INTO drip_feed_runs (id, order_id, run_no, quantity)
        SELECT nextval(pg_get_serial_sequence('orders', 'id')), o.id, r.run_no,
               o.quantity / o.runs + CASE WHEN r.run_no <= o.quantity % o.runs THEN 1 ELSE 0 END
        FROM orders o CROSS JOIN LATERAL generate_series(1, o.runs) AS r(run_no)
        WHERE o.runs IS NOT NULL AND o.runs > 0
        """
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_drip_feed_runs_order_id"), table_name="drip_feed_runs")
    op.drop_table("drip_feed_runs")
