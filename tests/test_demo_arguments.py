"""``kerbside demo``'s arguments, parsed only: the demo itself is a street of processes."""

from __future__ import annotations

import pytest

from kerbside.cli import build_parser


@pytest.mark.parametrize("duration", ["nan", "inf", "-inf", "0", "-5", "soon"])
def test_a_duration_that_is_not_a_positive_finite_number_is_refused(
    duration: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["demo", f"--duration={duration}"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("kerbside demo: error: argument --duration: "), err
    assert repr(duration) in err[-1]


def test_a_positive_duration_is_taken() -> None:
    assert build_parser().parse_args(["demo", "--duration", "0.5"]).duration == 0.5
    assert build_parser().parse_args(["demo"]).duration is None
