"""``kerbside-edge replay``: the agent's parser and detector over a capture, on the capture's clock.

Prints each occupancy event payload (docs/protocols.md) as one compact JSON line, numbered from 1 as
a fresh outbox would number it. Output depends only on the capture and the config, so the same
capture always gives byte-identical output. A capture line that cannot be read is reported on
stderr with its line number and skipped; a last line on stderr sums the capture up, and with
``--strict`` any skipped line makes the exit status 1, so that a replay of part of a capture
cannot pass for one of all of it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kerbside.core.config import ConfigError
from kerbside.core.output import plural, print_lines
from kerbside.edge.ble import BleDecoder
from kerbside.edge.capture import BadCaptureLine, BleRecord, CaptureRecord, read_capture
from kerbside.edge.config import EdgeConfig, load_edge_config
from kerbside.edge.detector import Detector
from kerbside.edge.kbs1 import Kbs1Parser
from kerbside.edge.model import Frame, OccupancyChange, event_payload

REPLAY_EPOCH = "replay"


def replay_changes(
    records: Iterable[CaptureRecord | BadCaptureLine],
    config: EdgeConfig,
    on_error: Callable[[BadCaptureLine], None] | None = None,
    detector: Detector | None = None,
) -> Iterator[OccupancyChange]:
    """The detector's changes over ``records``, in order; deadlines up to the last record fire."""
    if detector is None:
        detector = Detector(config.detector, config.bay_of_sensor)
    parsers: dict[str, Kbs1Parser] = {}
    ble = BleDecoder(config.ble.company_id)
    for record in records:
        if isinstance(record, BadCaptureLine):
            if on_error is not None:
                on_error(record)
            continue
        if isinstance(record, BleRecord):
            items = ble.decode_mfr(record.mfr)
        else:
            parser = parsers.get(record.src)
            if parser is None:
                parser = parsers[record.src] = Kbs1Parser()
            items = parser.feed(record.data)
        for item in items:
            if isinstance(item, Frame):
                yield from detector.observe(item, record.t)
                if isinstance(record, BleRecord):
                    detector.note_rssi(item.sensor_id, record.rssi)
        yield from detector.tick(record.t)


@dataclass
class Tally:
    """What a replay made of its capture, for the line that ends its stderr."""

    read: int = 0  # lines that were not blank
    skipped: int = 0  # lines that were not a record
    events: int = 0  # events printed

    def count(
        self, records: Iterable[CaptureRecord | BadCaptureLine]
    ) -> Iterator[CaptureRecord | BadCaptureLine]:
        """``records`` as they are, counted."""
        for record in records:
            self.read += 1
            self.skipped += isinstance(record, BadCaptureLine)
            yield record

    def summary(self, name: str) -> str:
        """``C: 1204 records read: 1203 replayed, 1 skipped; 6 events printed``, as the
        collector's replay sums up a journal."""
        return (
            f"{name}: {plural(self.read, 'record')} read: {self.read - self.skipped} replayed,"
            f" {self.skipped} skipped; {plural(self.events, 'event')} printed"
        )


def _epoch(config: EdgeConfig) -> str:
    path = config.outbox.path
    if not path.exists():
        return REPLAY_EPOCH
    try:
        from kerbside.edge.outbox import OutboxError, read_epoch  # noqa: PLC0415 - optional

        try:
            epoch = read_epoch(path)
        except OutboxError as exc:
            # the error names the file already
            print(f"kerbside-edge: {exc}; numbering as {REPLAY_EPOCH!r}", file=sys.stderr)
            return REPLAY_EPOCH
    except ImportError:
        return REPLAY_EPOCH
    return epoch or REPLAY_EPOCH


def replay_main(args: argparse.Namespace) -> int:
    config = load_edge_config(args.config)
    capture = Path(args.capture)
    if capture.is_dir():
        raise ConfigError(f"{capture}: is a directory, not a capture file")
    if not capture.is_file():
        raise ConfigError(f"{capture}: no such capture file")
    epoch = _epoch(config)
    tally = Tally()

    def report(error: BadCaptureLine) -> None:
        print(f"kerbside-edge: {capture}:{error.line_no}: {error.message}", file=sys.stderr)

    def lines() -> Iterator[str]:
        changes = replay_changes(tally.count(read_capture(capture)), config, report)
        for seq, change in enumerate(changes, start=1):
            tally.events = seq
            yield json.dumps(
                event_payload(change, config.gateway_id, epoch, seq), separators=(",", ":")
            )

    try:
        printed = print_lines(lines())
    except OSError as exc:  # stdout's own failures are OutputError, not OSError
        raise ConfigError(f"{capture}: cannot read: {exc.strerror or exc}") from exc
    if printed:
        print(tally.summary(str(capture)), file=sys.stderr)
    return 1 if args.strict and tally.skipped else 0
