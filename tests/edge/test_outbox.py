"""The durable outbox: seq and epoch across restarts, deletes on ack, the max_mb policy."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kerbside.edge.model import OccupancyChange, State
from kerbside.edge.outbox import Outbox, OutboxError, read_epoch

pytestmark = pytest.mark.slow  # starts processes (brokers, programs, servers)


def change(i: int) -> OccupancyChange:
    state: State = "occupied" if i % 2 else "vacant"
    return OccupancyChange(f"BAY-{i % 7}", f"S-{i % 7}", state, 1_000_000 + i, 1_010_000 + i)


def seqs(rows: list[tuple[int, bytes]]) -> list[int]:
    return [seq for seq, _ in rows]


def test_events_are_numbered_and_carry_the_epoch(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", "gw-1")
    rows = outbox.append([change(1), change(2)])
    assert seqs(rows) == [1, 2]
    body = json.loads(rows[1][1])
    assert body["event_id"] == f"gw-1:{outbox.epoch}:2"
    assert body["seq"] == 2
    assert body["gateway_id"] == "gw-1"
    assert body["ts"] == "1970-01-01T00:16:40.002Z"
    assert outbox.depth == 2


def test_seq_and_epoch_survive_a_restart_even_when_everything_was_acknowledged(
    tmp_path: Path,
) -> None:
    path = tmp_path / "o.db"
    outbox = Outbox(path, "gw-1")
    epoch = outbox.epoch
    outbox.append([change(i) for i in range(5)])
    for seq in range(1, 6):
        outbox.ack(seq)
    outbox.close()

    again = Outbox(path, "gw-1")
    assert again.epoch == epoch
    assert again.depth == 0
    assert seqs(again.append([change(9)])) == [6]


def test_events_stay_until_their_acks_are_flushed(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    outbox = Outbox(path, "gw-1")
    outbox.append([change(i) for i in range(4)])
    outbox.ack(2)
    outbox.ack(3)
    assert seqs(outbox.read_after(0, 10)) == [1, 2, 3, 4]  # acked, not yet deleted
    assert outbox.flush_acks() == 2
    assert seqs(outbox.read_after(0, 10)) == [1, 4]
    assert outbox.depth == 2
    outbox.close()
    assert seqs(Outbox(path, "gw-1").read_after(0, 10)) == [1, 4]


def test_read_after_pages_in_seq_order(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", "gw-1")
    outbox.append([change(i) for i in range(10)])
    assert seqs(outbox.read_after(0, 3)) == [1, 2, 3]
    assert seqs(outbox.read_after(3, 3)) == [4, 5, 6]
    assert seqs(outbox.read_after(9, 3)) == [10]
    assert outbox.read_after(10, 3) == []


def test_a_full_outbox_drops_the_oldest_events_counts_and_logs_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    one_event = len(Outbox(tmp_path / "probe.db", "gw-1").append([change(1)])[0][1]) + 48
    outbox = Outbox(tmp_path / "o.db", "gw-1", max_mb=10 * one_event / (1024 * 1024))
    outbox.append([change(i) for i in range(10)])
    assert outbox.events_dropped == 0
    outbox.append([change(i) for i in range(3)])
    assert outbox.events_dropped == 3
    assert seqs(outbox.read_after(0, 100)) == list(range(4, 14))
    assert outbox.stored_bytes <= outbox.max_bytes
    assert "dropped the 3 oldest events, seq 1..3" in caplog.text


def test_read_epoch_is_none_without_an_outbox_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    assert read_epoch(path) is None
    assert not path.exists()


def test_read_epoch_reads_a_live_outbox_without_changing_it(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    outbox = Outbox(path, "gw-1")  # still open: WAL and shm files present
    outbox.append([change(1)])
    assert read_epoch(path) == outbox.epoch
    outbox.close()
    before = path.read_bytes()
    assert read_epoch(path) == outbox.epoch
    assert path.read_bytes() == before


def test_read_epoch_of_something_else_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database at all, just some text that is long enough" * 20)
    with pytest.raises(OutboxError, match="not an outbox") as err:
        read_epoch(path)
    assert "\n" not in str(err.value)


def test_a_wiped_outbox_gets_a_new_epoch_so_ids_never_collide(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    ids: set[str] = set()
    epochs = set()
    for _ in range(5):
        outbox = Outbox(path, "gw-1")
        epochs.add(outbox.epoch)
        rows = outbox.append([change(i) for i in range(20)])
        new = {json.loads(p)["event_id"] for _, p in rows}
        assert not new & ids
        ids |= new
        outbox.close()
        for file in tmp_path.glob("o.db*"):
            file.unlink()
    assert len(epochs) == 5
    assert len(ids) == 100


def test_an_append_that_returned_survives_the_process_being_killed(tmp_path: Path) -> None:
    """``append`` returns only after the commit; a SIGKILL right after loses nothing, and the
    next open continues the numbering."""
    path = tmp_path / "o.db"
    script = textwrap.dedent(
        f"""
        import sys, time
        from kerbside.edge.model import OccupancyChange
        from kerbside.edge.outbox import Outbox
        outbox = Outbox({str(path)!r}, "gw-1")
        for i in range(50):
            outbox.append([OccupancyChange("B", "S", "vacant", i, i + 1)])
        print(outbox.epoch, flush=True)
        time.sleep(60)  # killed long before
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    epoch = proc.stdout.readline().strip()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    outbox = Outbox(path, "gw-1")
    assert outbox.epoch == epoch
    assert outbox.depth == 50
    assert seqs(outbox.append([change(0)])) == [51]
