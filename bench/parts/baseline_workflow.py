"""The baseline of bench/throughput.py: a workflow that runs one no-op activity.

In a module of its own: the workflow sandbox re-imports the module that defines a workflow, so it must not
import anything with I/O (httpx, the database).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="bench_noop")
async def noop(n: int) -> int:
    return n


@workflow.defn(name="BenchOneActivity")
class OneActivity:
    @workflow.run
    async def run(self, n: int) -> int:
        return await workflow.execute_activity(noop, n, start_to_close_timeout=timedelta(seconds=30))
