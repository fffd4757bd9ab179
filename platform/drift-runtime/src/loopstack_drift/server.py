"""Command line: `python -m loopstack_drift.server --host 127.0.0.1 --port P --store DIR`."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from loopstack_drift.limits import Limits

__all__ = ["main"]


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="loopstack_drift.server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    parser.add_argument("--port", type=int, default=8710, help="TCP port (default 8710)")
    parser.add_argument(
        "--store", type=Path, default=Path("drift-store"), help="directory for fitted detectors"
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    for limit in fields(Limits):
        # One flag per limit (`--max-body-bytes`, ...), its default the dataclass's.
        parser.add_argument(
            "--" + limit.name.replace("_", "-"),
            type=int,
            default=limit.default,
            metavar="N",
            help=f"see PROTOCOL.md, Limits (default {limit.default})",
        )
    args = parser.parse_args(argv)
    for limit in fields(Limits):
        if getattr(args, limit.name) < (2 if limit.name == "max_categories" else 1):
            parser.error(f"--{limit.name.replace('_', '-')} must be a positive number")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Run the detector server until interrupted."""
    args = _parse(argv)
    # alibi-detect imports transformers, which warns that no torch/TF exists: we need neither.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Imported here so `--help` answers without the ~9 s alibi-detect import.
    import uvicorn

    from loopstack_drift.app import create_app
    from loopstack_drift.service import DetectorService

    limits = Limits(**{limit.name: getattr(args, limit.name) for limit in fields(Limits)})
    app = create_app(DetectorService(args.store, limits))
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)


if __name__ == "__main__":
    main()
