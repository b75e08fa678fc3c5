"""Several runs of the benchmarks merged into one table: each figure as its spread (min-max).

Rows of different runs are matched by their module and their label with the numbers taken out
(a label may carry counts or rates that differ from run to run); every number that differs is
shown as ``min-max``, in the label and in the figure alike. A row whose verdict is not the same
in every run is flagged: that is a bench to fix, not a figure to report.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from common import Row

NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


@dataclass(frozen=True)
class RunRows:
    """One run's rows, each with the module that measured it."""

    label: str  # "quiet 1", "burners 1"
    rows: list[tuple[str, Row]]


def template(text: str) -> str:
    return NUMBER.sub("#", text)


def _value(number: str) -> float:
    return float(number.replace(",", ""))


def merge_text(texts: Sequence[str]) -> str:
    """``texts`` alike but for their numbers -> one text with each varying number as min-max;
    texts of different shapes (a failure beside figures) are listed apart."""
    if not texts:
        return "-"
    shapes: dict[str, list[str]] = {}
    for text in texts:
        shapes.setdefault(template(text), []).append(text)
    if len(shapes) > 1:
        return " | ".join(merge_text(alike) for alike in shapes.values())
    numbers = [NUMBER.findall(t) for t in texts]
    parts = NUMBER.split(texts[0])
    out = [parts[0]]
    for i, rest in enumerate(parts[1:]):
        column = [n[i] for n in numbers]
        low = min(column, key=_value)
        high = max(column, key=_value)
        out.append(low if _value(low) == _value(high) else f"{low}-{high}")
        out.append(rest)
    return "".join(out)


@dataclass
class _Line:
    labels: list[str]
    targets: list[str]
    measured: dict[str, list[str]]  # group ("quiet" / "burners") -> measured of each run
    verdicts: dict[str, list[bool]]


def _group(run_label: str) -> str:
    return run_label.split(maxsplit=1)[0]


def merge(runs: Sequence[RunRows]) -> list[list[str]]:
    """Table lines: figure, target, one cell per group of runs (quiet, burners), ok."""
    groups = list(dict.fromkeys(_group(r.label) for r in runs))
    lines: dict[tuple[str, str, int], _Line] = {}
    for run in runs:
        seen: dict[tuple[str, str], int] = {}
        for module, row in run.rows:
            shape = (module, template(row.figure))
            seen[shape] = seen.get(shape, 0) + 1
            line = lines.setdefault(
                (*shape, seen[shape]),
                _Line([], [], {g: [] for g in groups}, {g: [] for g in groups}),
            )
            group = _group(run.label)
            line.labels.append(row.figure)
            line.measured[group].append(row.measured)
            line.targets.append(row.target)
            line.verdicts[group].append(row.ok)
    table: list[list[str]] = []
    for line in lines.values():
        label = merge_text(line.labels)
        cells = []
        for g in groups:
            count = len(line.verdicts[g])
            runs_in = sum(1 for r in runs if _group(r.label) == g)
            cell = merge_text(line.measured[g]) if line.measured[g] else "-"
            if count < runs_in:
                cell += f" (missing in {runs_in - count} of {runs_in} runs)"
            cells.append(cell)
        # a run without the row (its measurement failed) counts as a miss
        ran = {g: sum(1 for r in runs if _group(r.label) == g) for g in groups}
        oks = {g: sum(line.verdicts[g]) for g in groups}
        if all(oks[g] == ran[g] for g in groups):
            ok = "yes"
        elif not any(oks.values()):
            ok = "NO"
        else:
            ok = "VARIES (" + ", ".join(f"{g} {oks[g]}/{ran[g]}" for g in groups) + " ok)"
        target = merge_text([t for t in line.targets if t != "-"]) if line.targets else "-"
        table.append([label, target, *cells, ok])
    return table


def render(runs: Sequence[RunRows], burners: int) -> str:
    groups = list(dict.fromkeys(_group(r.label) for r in runs))
    heads = []
    for g in groups:
        n = sum(1 for r in runs if _group(r.label) == g)
        runs_word = "run" if n == 1 else "runs"
        heads.append(
            f"quiet, {n} {runs_word}"
            if g == "quiet"
            else f"beside {burners} CPU burners, {n} {runs_word}"
        )
    head = ["figure", "target", *heads, "ok"]
    body = merge(runs)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def all_ok(runs: Sequence[RunRows]) -> bool:
    return all(row.ok for run in runs for _, row in run.rows)
