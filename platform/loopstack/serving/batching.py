"""Adaptive batching: requests that arrive while a version is busy are scored in one model call.

A single-row call of a scikit-learn pipeline costs milliseconds, nearly all of it per call, not
per row (validation, column selection, pandas indexing), so eight queued rows scored together
cost little more than one. Model calls run on one model thread, so the event loop keeps
accepting requests meanwhile (gRPC hands each new call over from its own thread, one at a time:
a loop blocked by the model would see them one per call). Nothing waits for a batch to fill: a
lone request is scored at once (after a few loop turns that let requests which arrived with it
join), and a batch is what queued up during the previous call. A batch that fails is retried
request by request, so one caller's bad row never fails another's answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from loopstack.serving.loader import LoadedVersion, Scores
from loopstack.serving.schema import Columns

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["AdaptiveBatcher"]

_SETTLE_TURNS = 8
"""Most event-loop turns spent letting requests that arrived together reach the queue."""

_Pending = tuple[Columns, int, "asyncio.Future[Scores]"]
_Outcome = Scores | Exception


@dataclass
class _Queue:
    """One version's waiting requests and the task draining them."""

    pending: list[_Pending] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    """Held here: the event loop keeps only a weak reference to a running task."""


class AdaptiveBatcher:
    """Scores each version's queued requests together on the model thread."""

    def __init__(
        self,
        score: Callable[[LoadedVersion, pd.DataFrame], Scores],
        max_rows: int,
        observe: Callable[[LoadedVersion, int], None] | None = None,
    ) -> None:
        """`score` answers one request's frame (its errors go to that caller); a batch is scored
        by `LoadedVersion.score` itself; `observe` hears the rows of every model call."""
        self._score = score
        self._max_rows = max_rows
        self._observe = observe
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        # Keyed by id: a queue lives only while its drain task (which holds the version) runs.
        self._queues: dict[int, _Queue] = {}

    async def score(self, version: LoadedVersion, checked: Columns, rows: int) -> Scores:
        """Score checked columns, together with whatever else is queued for the same version."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Scores] = loop.create_future()
        queue = self._queues.get(id(version))
        if queue is None:
            queue = self._queues[id(version)] = _Queue()
            queue.task = loop.create_task(self._drain(version, queue))
        queue.pending.append((checked, rows, future))
        return await future

    async def _drain(self, version: LoadedVersion, queue: _Queue) -> None:
        pending, loop = queue.pending, asyncio.get_running_loop()
        try:
            while pending:
                await _settle(pending)
                batch: list[_Pending] = []
                rows = 0
                while pending and (not batch or rows + pending[0][1] <= self._max_rows):
                    rows += pending[0][1]
                    batch.append(pending.pop(0))
                work = [(checked, size) for checked, size, _ in batch]
                outcomes = await loop.run_in_executor(
                    self._model_thread, self._run, version, work, rows
                )
                for (_, _, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():  # a caller that went away cancelled its future
                        continue
                    if isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            del self._queues[id(version)]  # the version may be unloaded: hold nothing of it
            for _, _, future in pending:  # left only if the drain itself was cancelled
                future.cancel()

    def _run(
        self, version: LoadedVersion, work: list[tuple[Columns, int]], rows: int
    ) -> list[_Outcome]:
        """On the model thread: one call for the batch, or one per request if that fails."""
        if len(work) > 1:
            self._observed(version, rows)
            merged = {
                name: [v for checked, _ in work for v in checked[name]] for name in work[0][0]
            }
            try:
                scores = version.score(version.schema.build(merged))
            except Exception:  # each request is then retried alone and fails alone
                pass
            else:
                out: list[_Outcome] = []
                start = 0
                for _, size in work:
                    out.append(_rows(scores, start, start + size))
                    start += size
                return out
        outcomes: list[_Outcome] = []
        for checked, size in work:
            self._observed(version, size)
            try:
                outcomes.append(self._score(version, version.schema.build(checked)))
            except Exception as exc:  # handed to the caller that sent these rows
                outcomes.append(exc)
        return outcomes

    def _observed(self, version: LoadedVersion, rows: int) -> None:
        if self._observe is not None:
            self._observe(version, rows)

    def close(self) -> None:
        """Stop the model thread (after the call it is running)."""
        self._model_thread.shutdown(wait=True, cancel_futures=True)


async def _settle(pending: list[_Pending]) -> None:
    """Yield until the queue stops growing: requests decoded in the same turn join the batch."""
    seen = -1
    for _ in range(_SETTLE_TURNS):
        if len(pending) == seen:
            return
        seen = len(pending)
        await asyncio.sleep(0)


def _rows(scores: Scores, start: int, end: int) -> Scores:
    probabilities = scores.probabilities
    return Scores(
        predictions=scores.predictions[start:end],
        probabilities=probabilities[start:end] if probabilities is not None else None,
    )
