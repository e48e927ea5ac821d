"""Reliability tests share one ledger; its table is printed at the end of the run (and written
to output/reliability/ledger_tests.json), next to the figures of the other tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from fluorosam_ros.reliability import Ledger

REPO_ROOT = Path(__file__).resolve().parents[2]
_LEDGER = Ledger()

# Deterministic (a failure reproduces on every machine), no example database in the checkout.
# Only these tests use hypothesis; a test's own @settings(max_examples=...) inherits the rest.
settings.register_profile("fluorosam_reliability", max_examples=80, deadline=None, database=None,
                          derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                 HealthCheck.function_scoped_fixture])
settings.load_profile("fluorosam_reliability")


@pytest.fixture(scope="session")
def ledger() -> Ledger:
    return _LEDGER


def pytest_terminal_summary(terminalreporter):
    if not (_LEDGER.inputs or _LEDGER.faults or _LEDGER.load):
        return
    terminalreporter.section("reliability ledger (test/reliability)")
    for line in _LEDGER.markdown().splitlines():
        terminalreporter.write_line(line)
    for note in _LEDGER.notes:
        terminalreporter.write_line(f"note: {note}")
    try:
        _LEDGER.to_json(REPO_ROOT / "output" / "reliability" / "ledger_tests.json")
    except OSError:
        pass
