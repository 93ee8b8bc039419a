"""The CLI exits with its command's own status: 20 back-to-back `backoffice orders pause` / `resume` calls, as
real processes against the Temporal dev server, a real worker and database, all exit 0 (the Temporal SDK's
runtime threads used to abort some at interpreter shutdown: exit 134 after printing success)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

from ops_support import open_sim_shop, sim_worker, temporal_address, wait_for_order
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from backoffice.temporal_client import start_order_workflow
from providers.simulator import create_simulator_app
from support import place

BACKOFFICE = Path(sys.executable).parent / "backoffice"
CALLS = 20


async def test_twenty_pauses_and_resumes_all_exit_0(
    db_url: str, sessions: async_sessionmaker[AsyncSession], dev_server: WorkflowEnvironment
) -> None:
    sim = create_simulator_app(api_key="sim-demo-key")
    async with sim_worker(dev_server.client, sessions, sim, f"exit-{uuid.uuid4().hex[:8]}") as queue:
        shop = await open_sim_shop(sessions)
        order = await place(sessions, shop, 3000)  # three hourly runs: delivering for the whole test
        await start_order_workflow(dev_server.client, queue, order)
        await wait_for_order(sessions, order.order_id, phase="delivering")
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEMPORAL_ADDRESS")} | {
            "DATABASE_URL": db_url,
            "TEMPORAL_ADDRESS": temporal_address(dev_server),
            "TEMPORAL_NAMESPACE": dev_server.client.namespace,
            "DATA_DIR": "/nonexistent",
        }
        ran: list[subprocess.CompletedProcess[str]] = []
        for n in range(CALLS):
            action = "pause" if n % 2 == 0 else "resume"
            argv = [str(BACKOFFICE), "orders", action, str(order.order_id), "--actor", "ops:ann",
                    "--reason", f"call {n}"]  # fmt: skip
            ran.append(await asyncio.to_thread(subprocess.run, argv, env=env, capture_output=True, text=True))
        await dev_server.client.get_workflow_handle(f"order-{order.order_id}").terminate("test over")
    codes = [r.returncode for r in ran]
    print(f"\nexit codes of {CALLS} pause/resume calls: {codes}")
    assert codes == [0] * CALLS, [(r.returncode, r.stdout, r.stderr[-500:]) for r in ran if r.returncode]
    assert all(r.stdout.startswith(f"order {order.order_id}: {'paused' if n % 2 == 0 else 'resumed'}: ")
               for n, r in enumerate(ran))  # fmt: skip
    assert all("Fatal Python error" not in r.stderr for r in ran)


def test_text_the_store_cannot_keep_is_refused_at_the_command_line() -> None:
    env = {**os.environ, "DATABASE_URL": "postgresql://nobody@/none", "TEMPORAL_ADDRESS": "127.0.0.1:1"}

    def backoffice(*argv: str | bytes) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([str(BACKOFFICE), *argv], env=env, capture_output=True, timeout=60)

    pause = ("orders", "pause", "1", "--actor", "ops:ann", "--reason")
    control = backoffice(*pause, "stop\x1bnow")
    assert control.returncode == 2
    assert b"control character (U+001B)" in control.stderr
    # Bytes that are not UTF-8 reach Python as lone surrogates (surrogateescape): refused too.
    undecodable = backoffice(*pause, b"stop\xffnow")
    assert undecodable.returncode == 2
    assert b"lone surrogate (U+DCFF)" in undecodable.stderr
    refund = ("orders", "refund", "1", "--actor", "support:lee", "--reason", "r", "--idempotency-key", "k")
    arabic = backoffice(*refund, "--amount", "٢٥")
    assert arabic.returncode == 2
    assert b"--amount" in arabic.stderr
    # A key the API would refuse (a space, over 200 characters) is refused here too: the ledger keeps it.
    for key in ("T 1", "k" * 201):
        keyed = backoffice(*refund[:-1], key, "--amount", "1")
        assert keyed.returncode == 2, keyed.stderr
        assert b"idempotency key is 1-200 printable ASCII" in keyed.stderr
    listed = backoffice("orders", "list", "--to", "9999-12-31T23:59:59-23:59")
    assert listed.returncode == 2
    assert b"years 1-9999" in listed.stderr
