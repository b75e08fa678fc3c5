"""Run Kerbside's benchmarks and print one table.

    python bench/run.py              # every benchmark, once
    python bench/run.py edge rules   # only those whose module name contains a word given
    python bench/run.py --runs 2 --burner-runs 1
                                     # the set twice, then once beside two CPU burners
                                     # (`yes > /dev/null`): one table of each figure's spread

Each ``bench/bench_*.py`` module exposes ``run(quick: bool) -> list[Row]``; every figure is a
ratio or a rate measured in one run, printed beside its target. A measurement that gave up (a
wait that ran out, a process that died) shows as FAILED in its row, with no figure, and the
command exits non-zero, as it does when a figure misses its target. With several runs, each is
its own process, and a row whose verdict differs between runs is flagged VARIES.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Row, attempt
from spread import RunRows, all_ok, render

from kerbside.core.version import VERSION

HERE = Path(__file__).resolve().parent


def _modules(selected: list[str]) -> list[Path]:
    found = sorted(HERE.glob("bench_*.py"))
    if selected:
        found = [p for p in found if any(word in p.stem for word in selected)]
    return found


def _run_once(only: list[str], quick: bool) -> list[tuple[str, Row]]:
    rows: list[tuple[str, Row]] = []
    for path in _modules(only):
        name = path.stem.removeprefix("bench_")
        started = time.monotonic()
        print(f"[bench] {path.stem} ...", file=sys.stderr, flush=True)

        def measure(path: Path = path) -> list[Row]:
            spec = importlib.util.spec_from_file_location(path.stem, path)
            assert spec is not None
            assert spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            found: list[Row] = module.run(quick)
            return found

        rows += [(name, row) for row in attempt(f"{name} (every row)", measure)]
        print(
            f"[bench] {path.stem} done in {time.monotonic() - started:.1f}s",
            file=sys.stderr,
            flush=True,
        )
    return rows


def _table(rows: list[Row]) -> str:
    width = max((len(r.figure) for r in rows), default=10)
    lines = [f"| {'figure'.ljust(width)} | measured | target | ok |"]
    lines.append(f"|{'-' * (width + 2)}|----------|--------|----|")
    for r in rows:
        ok = "yes" if r.ok else "NO"
        lines.append(f"| {r.figure.ljust(width)} | {r.measured} | {r.target} | {ok} |")
    return "\n".join(lines)


def _child_run(args: argparse.Namespace, label: str, burners: int) -> tuple[RunRows, str]:
    """One run of the set in a process of its own, beside ``burners`` CPU burners."""
    with tempfile.TemporaryDirectory(prefix="kerbside-bench-run-") as tmp:
        out = Path(tmp) / "rows.json"
        command = [sys.executable, str(HERE / "run.py"), *args.only, "--json", str(out)]
        if args.quick:
            command.append("--quick")
        hogs = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(burners)]
        load = os.getloadavg()[0]
        started = time.monotonic()
        print(f"[bench] === {label} ===", file=sys.stderr, flush=True)
        try:
            code = subprocess.run(command, stdout=sys.stderr, check=False).returncode
        finally:
            for hog in hogs:
                hog.terminate()
                hog.wait()
        note = (
            f"{label}: load average {load:.2f} at its start, "
            f"{(time.monotonic() - started) / 60:.1f} min"
        )
        if not out.exists():
            crashed = Row.failure(f"{label} (every row)", RuntimeError(f"exit code {code}"))
            return RunRows(label, [("run", crashed)]), note
        found = json.loads(out.read_text())
    return RunRows(label, [(m, Row(**r)) for m, r in found]), note


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="examples: python bench/run.py edge; python bench/run.py --runs 2 --burner-runs 1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    parser.add_argument("only", nargs="*", help="run only benchmarks whose name contains these")
    parser.add_argument("--quick", action="store_true", help="smaller inputs, for a smoke run")
    parser.add_argument(
        "--runs", type=int, default=1, metavar="N", help="run the set N times (default 1)"
    )
    parser.add_argument(
        "--burner-runs",
        type=int,
        default=0,
        metavar="M",
        help="then M more runs beside CPU burners, in a column of their own (default 0)",
    )
    parser.add_argument(
        "--burners",
        type=int,
        default=2,
        metavar="K",
        help="how many `yes > /dev/null` burn CPU beside those runs (default 2)",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args()
    if args.runs < 1 or args.burner_runs < 0 or args.burners < 1:
        parser.error("--runs must be >= 1, --burner-runs >= 0, --burners >= 1")
    if not _modules(args.only):
        parser.error(f"no benchmark matches {' '.join(args.only)}")

    if args.runs == 1 and args.burner_runs == 0:
        rows = _run_once(args.only, args.quick)
        if args.json is not None:
            args.json.write_text(json.dumps([(m, dataclasses.asdict(r)) for m, r in rows]))
        print(_table([r for _, r in rows]))
        return 0 if all(r.ok for _, r in rows) else 1

    runs: list[RunRows] = []
    notes: list[str] = []
    plan = [(f"quiet {i + 1}", 0) for i in range(args.runs)]
    plan += [(f"burners {i + 1}", args.burners) for i in range(args.burner_runs)]
    for label, burners in plan:
        run, note = _child_run(args, label, burners)
        runs.append(run)
        notes.append(note)
    print(render(runs, args.burners))
    print()
    for note in notes:
        print(f"- {note}")
    return 0 if all_ok(runs) else 1


if __name__ == "__main__":
    sys.exit(main())
