"""The reliability ledger: outcomes classified, totals, one Markdown table, JSON round trip."""

from __future__ import annotations

import json

import pytest

from fluorosam_ros.reliability import ACCEPTED, CRASHED, REFUSED, Ledger


class Refusal(ValueError):
    pass


def _refuse():
    raise Refusal("no")


def _crash():
    raise KeyError("unrelated")


def test_attempt_classifies_refused_accepted_and_crashed():
    ledger = Ledger()
    assert ledger.attempt("b", "k", _refuse, Refusal) == REFUSED
    assert ledger.attempt("b", "k", _crash, Refusal) == CRASHED
    assert ledger.attempt("b", "k", lambda: 3, Refusal) == ACCEPTED
    assert ledger.attempt("b", "k", lambda: "not_understood", (), accept_ok=lambda r: r == "not_understood") == REFUSED
    row = ledger.inputs[("b", "k")]
    assert (row.tried, row.refused, row.accepted, row.crashed) == (4, 2, 1, 1)
    assert any("KeyError" in e for e in row.examples)
    assert ledger.crashes == 1 and ledger.accepted == 1 and len(ledger.problems()) == 1
    with pytest.raises(ValueError):
        ledger.bad_input("b", "k", "exploded")


def test_one_markdown_table_with_inputs_faults_and_figures(tmp_path):
    ledger = Ledger()
    ledger.bad_input("/carm/move", "NaN pose", REFUSED)
    ledger.bad_input("/carm/move", "NaN pose", REFUSED)
    ledger.fault("kill segmentation_node", True, "back in 3 s")
    ledger.fault("kill carm_sim", False, "planner down")
    ledger.figure("latency p99", 123.4, "ms", "< 1000 ms", True)
    ledger.figure("stop latency", 40, "ms", "<= 350 ms", True, section="safety")
    table = ledger.markdown()
    lines = table.splitlines()
    assert all(line.startswith("| ") and line.endswith(" |") for line in lines)
    assert len({line.count(" | ") for line in lines}) == 1  # one table: every row has the same columns
    assert "| bad input | /carm/move | NaN pose | 2 | 2 | 0 | 0 |  |" in table
    assert "kill carm_sim" in table and "123 ms (goal: < 1000 ms) ✓" in table
    assert lines.index(next(l for l in lines if "stop latency" in l)) < lines.index(next(l for l in lines if "p99" in l))
    assert ledger.problems() == ["fault kill carm_sim: 1 of 1 not recovered (planner down)"]
    path = tmp_path / "ledger.json"
    ledger.to_json(path)
    data = json.loads(path.read_text())
    assert data["totals"] == {"tried": 2, "refused": 2, "accepted": 0, "crashes": 0, "faults_injected": 2,
                              "faults_recovered": 1}
    assert Ledger.from_dict(data).markdown() == table


def test_merge_adds_up():
    a, b = Ledger(), Ledger()
    a.bad_input("x", "y", REFUSED)
    b.bad_input("x", "y", CRASHED, "boom")
    b.fault("f", True)
    a.merge(b)
    assert a.tried == 2 and a.crashes == 1 and a.faults_recovered == 1
