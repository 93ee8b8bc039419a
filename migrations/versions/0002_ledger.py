"""ledger: transfer kinds as a constraint; (account, id) indexes for statements

Revision ID: 0002_ledger
Revises: 0001
Create Date: 2026-11-27 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_ledger"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_check_constraint(
        "ledger_transfers_kind",
        "ledger_transfers",
        sa.text("kind IN ('deposit', 'charge', 'revenue', 'refund', 'reversal', 'adjustment')"),
    )
    # The (account, id) indexes also serve every lookup the single-column ones did.
    op.drop_index("ix_ledger_transfers_debit_account", table_name="ledger_transfers")
    op.drop_index("ix_ledger_transfers_credit_account", table_name="ledger_transfers")
    op.create_index("ledger_transfers_debit_account_id", "ledger_transfers", ["debit_account", "id"])
    op.create_index("ledger_transfers_credit_account_id", "ledger_transfers", ["credit_account", "id"])


def downgrade() -> None:
    op.drop_index("ledger_transfers_credit_account_id", table_name="ledger_transfers")
    op.drop_index("ledger_transfers_debit_account_id", table_name="ledger_transfers")
    op.create_index("ix_ledger_transfers_credit_account", "ledger_transfers", ["credit_account"])
    op.create_index("ix_ledger_transfers_debit_account", "ledger_transfers", ["debit_account"])
    op.drop_constraint("ledger_transfers_kind", "ledger_transfers", type_="check")
