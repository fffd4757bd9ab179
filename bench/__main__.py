"""`make bench`: every benchmark in turn; each prints its table and writes bench/results/*.json."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ["bench_events", "bench_pipelines", "bench_drift", "bench_feedback", "bench_serving"]


def main() -> int:
    """Run each benchmark script that exists; report which failed."""
    failed = []
    for name in BENCHES:
        path = HERE / f"{name}.py"
        if not path.is_file():
            continue
        print(f"\n=== {name} ===", flush=True)
        try:
            runpy.run_path(str(path), run_name="__main__")
        except SystemExit as exc:
            if exc.code not in (0, None):
                failed.append(name)
        except Exception as exc:
            print(f"{name} failed: {exc}", file=sys.stderr)
            failed.append(name)
    if failed:
        print(f"benchmarks that missed a target or failed: {', '.join(failed)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
