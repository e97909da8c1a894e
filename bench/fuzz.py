"""schemathesis against a live API, every check on, for a time budget: one JSON line.

The API runs as ``imagequeue-api serve`` on a private Redis and SQLite (``bench.api``); the
run is schemathesis' own CLI with the repository's ``schemathesis.toml`` (every check, and
the few places where our API answers differently from schemathesis' defaults on purpose,
each said why). Exit status 1 when it found anything; its report lands in ``--report-dir``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.api import DEV_KEY, api_server
from bench.engine import ROOT


def fuzz(url: str, out: Path, max_time_s: int, seed: int) -> dict[str, Any]:
    """Run schemathesis on the API at ``url``; the run's figures (report in ``out``)."""
    report = out / "schemathesis.json"
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "--no-color",
        "--config-file", str(ROOT / "schemathesis.toml"), "run",
        f"{url}/schema/openapi.json", "--header", f"Authorization: Bearer {DEV_KEY}",
        "--max-time", str(max_time_s), "--seed", str(seed), "--wait-for-schema", "30",
        "--report", "json", "--report-json-path", str(report),
    ]  # fmt: skip
    with (out / "schemathesis.txt").open("wb") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False,
                              cwd=ROOT, timeout=max_time_s + 300)  # fmt: skip
    found: dict[str, Any] = json.loads(report.read_text()) if report.exists() else {}
    cases = found.get("test_cases", {})
    return {
        "bench": "fuzz", "tool": f"schemathesis {found.get('schemathesis_version', '?')}",
        "seconds": round(found.get("running_time", 0.0), 1), "seed": seed,
        "operations": found.get("operations", {}).get("tested", 0),
        "cases": cases.get("generated", 0), "failures": cases.get("unique_failures", -1),
        "errors": len(found.get("errors", [])), "exit_code": done.returncode,
        "missing_test_data": found.get("warnings", {}).get("missing_test_data", []),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                   f"Python {platform.python_version()}",
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-time", type=int, default=300, help="seconds (default 300)")
    parser.add_argument("--seed", type=int, default=None, help="default: a new one each run")
    parser.add_argument("--report-dir", type=Path, default=None, help="keep the report here")
    args = parser.parse_args()
    seed = random.randrange(2**32) if args.seed is None else args.seed
    with tempfile.TemporaryDirectory() as tmp:
        out = args.report_dir or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        with api_server(Path(tmp), processes=1) as (url, _, _, _):
            result = fuzz(url, out, args.max_time, seed)
        print(json.dumps(result), flush=True)
        if result["failures"] or result["errors"] or result["exit_code"]:
            sys.stderr.write((out / "schemathesis.txt").read_text(errors="replace")[-6000:])
            sys.exit(1)


if __name__ == "__main__":
    main()
