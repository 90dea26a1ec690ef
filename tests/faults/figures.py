"""The fault suite's figures: kept per scenario in build/fault-figures.json, shown as a table in docs/guarantees.md.

`./tests/run tests/faults --figures` runs the suite and rewrites the table; `python3 tests/faults/figures.py`
rewrites it from the figures of the last runs.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
FIGURES = ROOT / "build" / "fault-figures.json"
DOC = ROOT / "docs" / "guarantees.md"
BEGIN, END = "<!-- fault figures: begin -->", "<!-- fault figures: end -->"


@dataclass
class Figures:
    """What one scenario published, what the fault did and what the oracle found."""

    scenario: str
    fault: str
    messages: int        # published by the test (results and retry)
    attempts: int        # distinct delivery attempts those messages carry: each must be written
    faults: int          # times the fault was applied
    lost: int            # attempts never written
    duplicated: int      # records written more than once (each one RabbitMQ redelivered)
    torn: int            # lines that are not one whole record
    recover_s: float | None  # from the fault's end until records flowed again
    exits: str           # how the daemon ended
    held: bool = False   # every check of the oracle passed
    order: int = 0       # where the scenario is in the suite (its test's line): the table's order


BOOK: list[Figures] = []  # this run's, in order


def record(figures: Figures) -> None:
    """Keep a scenario's figures for the end of the run."""
    BOOK.append(figures)


def save() -> None:
    """Merge this run's figures into build/fault-figures.json (a scenario run again replaces its row)."""
    if not BOOK:
        return
    rows = load()
    rows.update({f.scenario: dataclasses.asdict(f) for f in BOOK})
    FIGURES.parent.mkdir(exist_ok=True)
    FIGURES.write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")


def load() -> dict[str, dict[str, Any]]:
    """The figures kept so far, by scenario."""
    return json.loads(FIGURES.read_text()) if FIGURES.exists() else {}


def table(rows: dict[str, dict[str, Any]]) -> str:
    """The figures as a markdown table, in the suite's order."""
    head = ("| fault | messages | attempts | faults | lost | duplicated | torn lines | records flow again after |"
            " the daemon | held |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |\n")
    body = ""
    for r in sorted(rows.values(), key=lambda r: (r.get("order", 0), r["scenario"])):
        recover = "—" if r["recover_s"] is None else f"{r['recover_s']:.1f} s"
        body += (f"| {r['fault']} | {r['messages']} | {r['attempts']} | {r['faults']} | {r['lost']} | "
                 f"{r['duplicated']} | {r['torn']} | {recover} | {r['exits']} | {'yes' if r['held'] else '**no**'} |\n")
    return head + body


def update_doc() -> None:
    """Rewrite the table between the markers of docs/guarantees.md."""
    text = DOC.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    DOC.write_text(text[:start] + "\n" + table(load()) + text[end:])


if __name__ == "__main__":
    update_doc()
    sys.stdout.write(table(load()))
