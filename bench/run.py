"""Run Kerbside's benchmarks and print one table.

    python bench/run.py              # every benchmark
    python bench/run.py edge rules   # only those whose module name contains a word given

Each ``bench/bench_*.py`` module exposes ``run(quick: bool) -> list[Row]``; every figure is a
ratio or a rate measured in this one run, printed beside its target.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Row


def _modules(selected: list[str]) -> list[Path]:
    found = sorted(Path(__file__).resolve().parent.glob("bench_*.py"))
    if selected:
        found = [p for p in found if any(word in p.stem for word in selected)]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog="example: python bench/run.py edge"
    )
    parser.add_argument("only", nargs="*", help="run only benchmarks whose name contains these")
    parser.add_argument("--quick", action="store_true", help="smaller inputs, for a smoke run")
    args = parser.parse_args()
    rows: list[Row] = []
    for path in _modules(args.only):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        started = time.monotonic()
        print(f"[bench] {path.stem} ...", file=sys.stderr, flush=True)
        rows.extend(module.run(args.quick))
        print(f"[bench] {path.stem} done in {time.monotonic() - started:.1f}s", file=sys.stderr)
    width = max((len(r.figure) for r in rows), default=10)
    print(f"| {'figure'.ljust(width)} | measured | target | ok |")
    print(f"|{'-' * (width + 2)}|----------|--------|----|")
    for r in rows:
        ok = "yes" if r.ok else "NO"
        print(f"| {r.figure.ljust(width)} | {r.measured} | {r.target} | {ok} |")
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
