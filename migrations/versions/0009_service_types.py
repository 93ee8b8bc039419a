"""service types: each order keeps its service's type and the type's parameters (comments, usernames,
hashtag, ...); services and orders hold only the API v2 type names

Revision ID: 0009_service_types
Revises: 0008_drip_feed_runs
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009_service_types"
down_revision: str | None = "0008_drip_feed_runs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The API v2 type names as of this revision (workflows.models.ServiceType).
TYPES = (
    "Default",
    "Package",
    "Custom Comments",
    "Custom Comments Package",
    "Mentions",
    "Mentions with Hashtags",
    "Mentions Custom List",
    "Mentions Hashtag",
    "Mentions User Followers",
    "Mentions Media Likers",
    "Comment Likes",
    "Comment Replies",
    "Poll",
    "SEO",
    "Subscriptions",
)


def upgrade() -> None:
    connection = op.get_bind()
    # A type spelled in another case or spacing ("custom comments") is the same type; anything else would be
    # sold by rules it does not have, so the upgrade stops and names it.
    for name in TYPES:
        connection.execute(
            sa.text(
                "UPDATE services SET type = :name"
                " WHERE lower(btrim(regexp_replace(type, '\\s+', ' ', 'g'))) = :key"
            ),
            {"name": name, "key": name.lower()},
        )
    unknown = connection.execute(
        sa.text("SELECT id, type FROM services WHERE NOT (type = ANY(:types)) ORDER BY id"),
        {"types": list(TYPES)},
    ).all()
    if unknown:
        listed = ", ".join(f"service {row.id} ({row.type!r})" for row in unknown)
        raise RuntimeError(f"services with a type API v2 does not know: {listed}; set one of {TYPES}")
    op.create_check_constraint("services_type", "services", f"type IN {TYPES!r}")
    op.add_column(
        "orders", sa.Column("service_type", sa.String(length=40), server_default="Default", nullable=False)
    )
    op.add_column("orders", sa.Column("parameters", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.create_check_constraint("orders_service_type", "orders", f"service_type IN {TYPES!r}")


def downgrade() -> None:
    op.drop_constraint("orders_service_type", "orders", type_="check")
    op.drop_column("orders", "parameters")
    op.drop_column("orders", "service_type")
    op.drop_constraint("services_type", "services", type_="check")
