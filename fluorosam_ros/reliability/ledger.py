"""The reliability ledger: what was thrown at the system and how it coped, as one table.

Three kinds of rows:

- bad inputs, per boundary and kind: how many were tried, how many were refused (or handled)
  as specified, how many were wrongly accepted, and how many crashed (an exception of an
  unrelated type in-process, or a node that died);
- faults injected (a killed node, a peer that vanished mid-move): injected, recovered;
- load figures (rates, latencies, memory growth) with their goal and whether it was met.

`Ledger.markdown()` prints all of it as ONE Markdown table; `Ledger.to_json()` the same data.
Thread-safe: ROS callbacks may record from executor threads. No ROS import here.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

REFUSED = "refused"      # refused (or handled) as specified: the clear error, or an error status
ACCEPTED = "accepted"    # a bad input that went through: a validation gap
CRASHED = "crashed"      # an unrelated exception, or a node that died
OUTCOMES = (REFUSED, ACCEPTED, CRASHED)


@dataclass
class InputRow:
    boundary: str            # e.g. "conversions.image_from_msg", "/carm/move (carm_sim)"
    kind: str                # e.g. "wrong encoding", "NaN pose"
    tried: int = 0
    refused: int = 0
    accepted: int = 0
    crashed: int = 0
    examples: list[str] = field(default_factory=list)  # what went wrong (accepted / crashed), a few

    def add(self, outcome: str, detail: str = "") -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; expected one of {OUTCOMES}")
        self.tried += 1
        setattr(self, outcome, getattr(self, outcome) + 1)
        if outcome != REFUSED and detail and len(self.examples) < 3:
            self.examples.append(detail[:200])


@dataclass
class FaultRow:
    fault: str               # e.g. "kill segmentation_node, restart"
    injected: int = 0
    recovered: int = 0
    detail: str = ""

    def add(self, recovered: bool, detail: str = "") -> None:
        self.injected += 1
        self.recovered += int(bool(recovered))
        if detail:
            self.detail = detail[:300]


@dataclass
class LoadRow:
    figure: str              # e.g. "segmentation latency p99"
    value: float
    unit: str = ""
    goal: str = ""           # e.g. "< 5 %"
    ok: bool | None = None   # None: reported only
    section: str = "load"    # or "safety": a measured figure of a safety property

    def shown(self) -> str:
        value = f"{self.value:.3g}" if isinstance(self.value, float) else str(self.value)
        return f"{value} {self.unit}".strip()


class Ledger:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.inputs: dict[tuple[str, str], InputRow] = {}
        self.faults: dict[str, FaultRow] = {}
        self.load: dict[str, LoadRow] = {}
        self.notes: list[str] = []

    # ---- recording -----------------------------------------------------------------------
    def bad_input(self, boundary: str, kind: str, outcome: str, detail: str = "") -> None:
        with self._lock:
            row = self.inputs.setdefault((boundary, kind), InputRow(boundary, kind))
            row.add(outcome, detail)

    def attempt(self, boundary: str, kind: str, call: Callable[[], Any],
                refusal: type[BaseException] | tuple[type[BaseException], ...],
                accept_ok: Callable[[Any], bool] | None = None) -> str:
        """Run `call` on one bad input and record the outcome: REFUSED when it raises
        `refusal` (the boundary's clear error type), ACCEPTED when it returns (unless
        `accept_ok(result)` says the answer is itself a correct refusal, e.g. a not_understood
        intent), CRASHED on any other exception. Returns the outcome."""
        try:
            result = call()
        except refusal:
            outcome, detail = REFUSED, ""
        except Exception as error:  # noqa: BLE001 - that is what is being counted
            outcome, detail = CRASHED, f"{type(error).__name__}: {error}"
        else:
            if accept_ok is not None and accept_ok(result):
                outcome, detail = REFUSED, ""
            else:
                outcome, detail = ACCEPTED, f"accepted: {result!r}"[:200]
        self.bad_input(boundary, kind, outcome, detail)
        return outcome

    def fault(self, fault: str, recovered: bool, detail: str = "") -> None:
        with self._lock:
            self.faults.setdefault(fault, FaultRow(fault)).add(recovered, detail)

    def figure(self, figure: str, value: float | str, unit: str = "", goal: str = "", ok: bool | None = None,
               section: str = "load") -> None:
        with self._lock:
            self.load[figure] = LoadRow(figure, value, unit, goal, ok, section)

    def note(self, text: str) -> None:
        with self._lock:
            self.notes.append(text)

    def merge(self, other: "Ledger") -> "Ledger":
        with self._lock:
            for key, row in other.inputs.items():
                mine = self.inputs.setdefault(key, InputRow(*key))
                for name in ("tried", "refused", "accepted", "crashed"):
                    setattr(mine, name, getattr(mine, name) + getattr(row, name))
                mine.examples = (mine.examples + row.examples)[:3]
            for name, row in other.faults.items():
                mine = self.faults.setdefault(name, FaultRow(name))
                mine.injected += row.injected
                mine.recovered += row.recovered
                mine.detail = row.detail or mine.detail
            self.load.update(other.load)
            self.notes.extend(other.notes)
        return self

    # ---- totals --------------------------------------------------------------------------
    @property
    def tried(self) -> int:
        return sum(r.tried for r in self.inputs.values())

    @property
    def refused(self) -> int:
        return sum(r.refused for r in self.inputs.values())

    @property
    def accepted(self) -> int:
        return sum(r.accepted for r in self.inputs.values())

    @property
    def crashes(self) -> int:
        return sum(r.crashed for r in self.inputs.values())

    @property
    def faults_injected(self) -> int:
        return sum(r.injected for r in self.faults.values())

    @property
    def faults_recovered(self) -> int:
        return sum(r.recovered for r in self.faults.values())

    def problems(self) -> list[str]:
        """Everything that is not as it should be, one line each (empty: all good)."""
        lines = [f"{r.boundary} / {r.kind}: {r.crashed} crashed, {r.accepted} accepted {r.examples}"
                 for r in self.inputs.values() if r.crashed or r.accepted]
        lines += [f"fault {r.fault}: {r.injected - r.recovered} of {r.injected} not recovered ({r.detail})"
                  for r in self.faults.values() if r.recovered < r.injected]
        lines += [f"{r.section} {r.figure}: {r.shown()} misses its goal {r.goal}"
                  for r in self.load.values() if r.ok is False]
        return lines

    # ---- output --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"inputs": [asdict(r) for r in self.inputs.values()],
                "faults": [asdict(r) for r in self.faults.values()],
                "load": [asdict(r) for r in self.load.values()],
                "totals": {"tried": self.tried, "refused": self.refused, "accepted": self.accepted,
                           "crashes": self.crashes, "faults_injected": self.faults_injected,
                           "faults_recovered": self.faults_recovered},
                "notes": list(self.notes)}

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, default=float)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    @classmethod
    def from_dict(cls, data: dict) -> "Ledger":
        ledger = cls()
        for row in data.get("inputs", []):
            ledger.inputs[(row["boundary"], row["kind"])] = InputRow(**row)
        for row in data.get("faults", []):
            ledger.faults[row["fault"]] = FaultRow(**row)
        for row in data.get("load", []):
            ledger.load[row["figure"]] = LoadRow(**row)
        ledger.notes = list(data.get("notes", []))
        return ledger

    def markdown(self) -> str:
        """One Markdown table: bad inputs per boundary and kind, faults, load figures, totals."""
        header = ["section", "boundary / fault / figure", "kind", "tried / injected",
                  "refused correctly / recovered", "wrongly accepted", "crashes / not recovered",
                  "figure (goal)"]
        rows = []
        for r in sorted(self.inputs.values(), key=lambda r: (r.boundary, r.kind)):
            rows.append(["bad input", r.boundary, r.kind, r.tried, r.refused, r.accepted, r.crashed, ""])
        if self.inputs:
            rows.append(["bad input", "**total**", "", self.tried, self.refused, self.accepted, self.crashes, ""])
        for r in self.faults.values():
            rows.append(["fault", r.fault, "", r.injected, r.recovered, "", r.injected - r.recovered, r.detail])
        if self.faults:
            rows.append(["fault", "**total**", "", self.faults_injected, self.faults_recovered, "",
                         self.faults_injected - self.faults_recovered, ""])
        for r in sorted(self.load.values(), key=lambda r: r.section != "safety"):
            verdict = "" if r.ok is None else (" ✓" if r.ok else " ✗")
            goal = f" (goal: {r.goal})" if r.goal else ""
            rows.append([r.section, r.figure, "", "", "", "", "", f"{r.shown()}{goal}{verdict}"])
        text = [_line(header), _line(["---"] * len(header))] + [_line(row) for row in rows]
        return "\n".join(text)


def _line(cells: list) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"
