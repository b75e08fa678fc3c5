"""How far a long command has got: on a terminal one line, redrawn and wiped; in a log, a line
now and then; and nothing at all for a short run."""

from __future__ import annotations

import io

from kerbside.collector.console import LOG_EVERY_S, TERMINAL_EVERY_S, TICK_EVERY, Progress, counted

WIPE = "\r\x1b[K"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_in_a_log_a_line_every_interval_and_none_in_the_first() -> None:
    clock, log = Clock(), io.StringIO()
    progress = Progress(log, clock)
    asked: list[int] = []

    def text(n: int) -> str:
        asked.append(n)
        return f"{n} read"

    progress.say(lambda: text(1))
    clock.now += LOG_EVERY_S - 1
    progress.say(lambda: text(2))
    clock.now += 1
    progress.say(lambda: text(3))
    clock.now += 1
    progress.say(lambda: text(4))
    clock.now += LOG_EVERY_S
    progress.say(lambda: text(5))
    progress.wipe()  # nothing to wipe in a log
    assert log.getvalue() == "3 read\n5 read\n"
    assert asked == [3, 5]  # the text is made only when it is shown


def test_on_a_terminal_one_line_redrawn_and_wiped() -> None:
    clock, terminal = Clock(), Terminal()
    with Progress(terminal, clock) as progress:
        progress.wipe()
        assert terminal.getvalue() == ""  # nothing drawn, nothing wiped
        clock.now += TERMINAL_EVERY_S
        progress.say(lambda: "1 read")
        clock.now += TERMINAL_EVERY_S / 2
        progress.say(lambda: "2 read")
        clock.now += TERMINAL_EVERY_S / 2
        progress.say(lambda: "3 read")
        assert terminal.getvalue() == f"{WIPE}1 read{WIPE}3 read"
    assert terminal.getvalue() == f"{WIPE}1 read{WIPE}3 read{WIPE}"


def test_counted_ticks_every_so_many_and_passes_everything_on() -> None:
    ticks: list[int] = []
    items = list(range(3 * TICK_EVERY + 5))
    assert list(counted(items, ticks.append)) == items
    assert ticks == [TICK_EVERY, 2 * TICK_EVERY, 3 * TICK_EVERY]
