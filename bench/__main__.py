"""`make bench`: every benchmark in turn; each prints its table and writes bench/results/*.json.

Each runs in a process of its own: what one sets up (environment, MLflow's global tracking URI,
loaded libraries) cannot change the next one's figures.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = [
    "bench_events",
    "bench_pipelines",
    "bench_drift",
    "bench_feedback",
    "bench_serving",
    "bench_durable",
]


def main() -> int:
    """Run each benchmark script that exists; report which failed."""
    failed = []
    for name in BENCHES:
        path = HERE / f"{name}.py"
        if not path.is_file():
            continue
        print(f"\n=== {name} ===", flush=True)
        if subprocess.run([sys.executable, str(path)], check=False).returncode != 0:
            failed.append(name)
    if failed:
        print(f"benchmarks that missed a target or failed: {', '.join(failed)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
