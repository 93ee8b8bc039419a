"""providers: request rate limit, refills forwarded at most once, link-fault submissions

Revision ID: 0003_providers
Revises: 0002_ledger
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_providers"
down_revision: str | None = "0002_ledger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATES = "state IN ('sending', 'accepted', 'rejected', 'needs_reconciliation')"
NEW_STATES = "state IN ('sending', 'accepted', 'rejected', 'link_fault', 'needs_reconciliation')"


def upgrade() -> None:
    op.add_column("providers", sa.Column("rate_limit_per_second", sa.Float(), nullable=True))
    op.drop_constraint("provider_submissions_state", "provider_submissions", type_="check")
    op.create_check_constraint("provider_submissions_state", "provider_submissions", NEW_STATES)
    op.create_table(
        "provider_refills",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("refill_no", sa.Integer(), nullable=False),
        sa.Column("provider_id", sa.BigInteger(), nullable=False),
        sa.Column("provider_order_id", sa.String(length=100), nullable=False),
        sa.Column("client_key", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=30), nullable=False),
        sa.Column("provider_refill_id", sa.String(length=100), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "state IN ('sending', 'accepted', 'rejected', 'needs_reconciliation')",
            name="provider_refills_state",
        ),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"]),
        sa.ForeignKeyConstraint(["provider_id"], ["providers.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("order_id", "refill_no", "provider_order_id", name="provider_refills_refill"),
    )
    op.create_index(op.f("ix_provider_refills_order_id"), "provider_refills", ["order_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_provider_refills_order_id"), table_name="provider_refills")
    op.drop_table("provider_refills")
    op.execute("UPDATE provider_submissions SET state = 'rejected' WHERE state = 'link_fault'")
    op.drop_constraint("provider_submissions_state", "provider_submissions", type_="check")
    op.create_check_constraint("provider_submissions_state", "provider_submissions", OLD_STATES)
    op.drop_column("providers", "rate_limit_per_second")
