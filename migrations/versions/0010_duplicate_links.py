"""the duplicate-link guard: a service may deny link duplicates; an active order of such a service holds
its normalised link, and a partial unique index keeps one active order per service and link

Revision ID: 0010_duplicate_links
Revises: 0009_service_types
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_duplicate_links"
down_revision: str | None = "0009_service_types"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "services",
        sa.Column("deny_link_duplicates", sa.Boolean(), server_default="false", nullable=False),
    )
    # Orders placed before the guard have no key: no service denied duplicates then.
    op.add_column("orders", sa.Column("link_key", sa.Text(), nullable=True))
    op.create_index(
        "orders_active_link",
        "orders",
        ["service_id", "link_key"],
        unique=True,
        postgresql_where=sa.text("link_key IS NOT NULL AND status IN ('Pending', 'In progress')"),
    )


def downgrade() -> None:
    op.drop_index("orders_active_link", table_name="orders")
    op.drop_column("orders", "link_key")
    op.drop_column("services", "deny_link_duplicates")
