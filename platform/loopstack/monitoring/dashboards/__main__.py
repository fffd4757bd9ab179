"""`python -m loopstack.monitoring.dashboards OUT_DIR`: write each dashboard as OUT_DIR/<name>.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from loopstack.monitoring.dashboards import build_all


def main(argv: list[str]) -> int:
    """Write the dashboards; exit 2 on a usage error."""
    if len(argv) != 1:
        print("usage: python -m loopstack.monitoring.dashboards OUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for name, doc in build_all().items():
        (out / f"{name}.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        print(out / f"{name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
