"""Per-model failures of the loop controller: one model's broken spec or failing tick is kept
here (for `GET /v1/models/{name}/history`, `loopstack status` and the API) while the controller
keeps deciding for the others."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from loopstack.core.errors import LoopstackError
from loopstack.core.events.store import reading
from loopstack.core.modelspec import ModelSpec, scan_model_specs
from loopstack.loop.store import naive
from loopstack.loop.tables import failures

__all__ = ["ModelFailures"]

log = logging.getLogger(__name__)


class ModelFailures:
    """The `loop_failures` rows: model -> latest reason, failing since."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._logged: dict[str, str] = {}

    def advance(
        self,
        models_dir: Path,
        controlled: Collection[str] | None,
        step: Callable[[ModelSpec], None],
    ) -> dict[str, str | None]:
        """Run `step` on every valid spec under `models_dir` (only `controlled` ones, if given),
        each in its own failure domain; return model -> failure reason, None when it advanced.

        A spec that does not load and a step that raises are logged (once per new reason),
        kept as the model's failure and retried on the next call; the other models go on."""
        specs, broken = scan_model_specs(models_dir)
        outcome: dict[str, str | None] = {
            name: reason
            for name, reason in broken.items()
            if controlled is None or name in controlled
        }
        for spec in specs:
            if controlled is not None and spec.name not in controlled:
                continue
            try:
                step(spec)
                outcome[spec.name] = None
            except Exception as exc:  # one model's failure must not stop the others
                cause = exc.message if isinstance(exc, LoopstackError) else repr(exc)
                outcome[spec.name] = f"its loop step failed: {cause}"
                if self._logged.get(spec.name) != outcome[spec.name]:
                    log.exception("loop: %s failed; retrying next tick", spec.name)
        for model, reason in outcome.items():
            if reason is not None and self._logged.get(model) != reason and model in broken:
                log.error("loop: %s is not advanced: %s", model, reason)
        try:
            for model, reason in outcome.items():
                if reason is not None:
                    self.failed(model, reason)
            self.keep_only({m for m, r in outcome.items() if r is not None})
        except Exception:  # the store is down: the next call records them again
            log.exception("loop: could not record the models' failures")
        self._logged = {m: r for m, r in outcome.items() if r is not None}
        return outcome

    def failed(self, model: str, reason: str) -> None:
        """Keep the latest reason (and the time the model first failed)."""
        wall = naive(datetime.now(UTC))
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(failures)
                .where(failures.c.model == model)
                .values(reason=reason, updated_at=wall)
            ).rowcount
            if not changed:
                conn.execute(
                    insert(failures).values(model=model, reason=reason, since=wall, updated_at=wall)
                )

    def keep_only(self, failing: set[str]) -> None:
        """Forget the failures of every other model (it advanced, or is gone or not controlled)."""
        with self.engine.begin() as conn:
            conn.execute(delete(failures).where(failures.c.model.not_in(sorted(failing))))

    def current(self) -> dict[str, dict[str, Any]]:
        """Failing models: reason, since and updated (ISO 8601 UTC)."""
        with reading(self.engine) as conn:
            rows = conn.execute(select(failures)).mappings().all()
        return {
            r["model"]: {
                "reason": r["reason"],
                "since": r["since"].replace(tzinfo=UTC).isoformat(),
                "updated_at": r["updated_at"].replace(tzinfo=UTC).isoformat(),
            }
            for r in rows
        }
