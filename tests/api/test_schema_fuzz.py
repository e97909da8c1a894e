"""schemathesis, every check on (``schemathesis.toml``), against a live API for a minute:
it finds nothing. The same run as ``just fuzz``, time-boxed and with a fixed seed so a
finding reproduces (``just fuzz --seed …`` runs longer, on new seeds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.api import api_server
from bench.fuzz import fuzz

pytestmark = pytest.mark.slow
SEED = 20261202
MAX_TIME_S = 60


def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    with api_server(tmp_path, processes=1) as (url, _, _, _):
        result = fuzz(url, tmp_path, MAX_TIME_S, SEED)
    log = (tmp_path / "schemathesis.txt").read_text(errors="replace")
    assert result["operations"] >= 14, log[-4000:]
    assert result["cases"] > 500, log[-4000:]
    assert (result["failures"], result["errors"], result["exit_code"]) == (0, 0, 0), log[-6000:]
    assert result["missing_test_data"] == [], json.dumps(result)
