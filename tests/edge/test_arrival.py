"""Where a frame stands among its sensor's frames: next, lost ones, reboots, repeats, late ones."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kerbside.edge.arrival import LATE_MS, WINDOW, Arrival, RecentFrames
from kerbside.edge.model import FLAG_BOOT, FLAG_DETECT, Frame

S = 1000  # ms


def frame(seq: int, mz: int = 380, flags: int = 0) -> Frame:
    return Frame("BLE-0000BEEF", seq, flags, 120, -300, mz, 3500, 12.0)


def arrivals(*frames: tuple[float, Frame]) -> list[tuple[Arrival, int]]:
    """Each frame, at its time in seconds, through one sensor's recent frames."""
    recent = RecentFrames()
    return [recent.arrive(f, round(t * S)) for t, f in frames]


def test_frames_in_order_follow_and_a_gap_counts_the_frames_lost() -> None:
    assert arrivals((0, frame(5)), (1, frame(6)), (61, frame(9)), (62, frame(10))) == [
        (Arrival.FIRST, 0),
        (Arrival.NEXT, 0),
        (Arrival.AFTER_GAP, 2),
        (Arrival.NEXT, 0),
    ]


def test_a_copy_delivered_after_the_next_frame_is_a_duplicate_not_a_reboot() -> None:
    """seq 5 again after 6 (a scanner's late report of an advert the sensor sent until its next
    one): dropped, no frame lost, and 7 still follows 6."""
    assert arrivals((0, frame(5)), (1, frame(6, 420)), (1.2, frame(5)), (2, frame(7, 450))) == [
        (Arrival.FIRST, 0),
        (Arrival.NEXT, 0),
        (Arrival.DUPLICATE, 0),
        (Arrival.NEXT, 0),
    ]


def test_copies_of_the_latest_are_duplicates_however_late() -> None:
    """A sensor advertises its latest frame until its next one, a minute or more on."""
    assert arrivals((0, frame(5)), (0.1, frame(5)), (59.9, frame(5)), (600, frame(5))) == [
        (Arrival.FIRST, 0),
        (Arrival.DUPLICATE, 0),
        (Arrival.DUPLICATE, 0),
        (Arrival.DUPLICATE, 0),
    ]


def test_the_latest_seq_with_another_reading_is_a_duplicate_unless_it_boots() -> None:
    assert arrivals(
        (0, frame(0, flags=FLAG_BOOT)),
        (1, frame(0, 400)),
        (30, frame(0, 420, FLAG_BOOT)),  # a second reboot
        (31, frame(0, 420, FLAG_BOOT)),
    ) == [
        (Arrival.FIRST, 0),
        (Arrival.DUPLICATE, 0),
        (Arrival.RESTART, 0),
        (Arrival.DUPLICATE, 0),
    ]


def test_a_frame_delivered_after_the_next_one_is_late_and_stays_lost() -> None:
    """7 before 6: 7 counts 6 as lost; 6 is dropped (its reading is older than 7's) and stays
    counted as lost, and so is any copy of it; 8 follows 7."""
    assert arrivals(
        (0, frame(5)),
        (1, frame(7, 420)),
        (1.5, frame(6, 400)),
        (1.6, frame(6, 400)),
        (2, frame(8, 440)),
    ) == [
        (Arrival.FIRST, 0),
        (Arrival.AFTER_GAP, 1),
        (Arrival.LATE, 0),
        (Arrival.LATE, 0),
        (Arrival.NEXT, 0),
    ]


def test_a_reboot_with_its_boot_frame_is_a_restart() -> None:
    assert arrivals(
        (0, frame(5)), (60, frame(6)), (70, frame(0, flags=FLAG_BOOT)), (130, frame(1))
    ) == [(Arrival.FIRST, 0), (Arrival.NEXT, 0), (Arrival.RESTART, 0), (Arrival.NEXT, 0)]


def test_a_reboot_whose_boot_frame_was_lost_is_a_restart() -> None:
    """A seq counting up from 0 again, further on than the time allows: frames 0 and 1 lost."""
    assert arrivals((0, frame(40000)), (60, frame(2)), (120, frame(3))) == [
        (Arrival.FIRST, 0),
        (Arrival.RESTART, 2),
        (Arrival.NEXT, 0),
    ]


def test_a_reboot_just_behind_the_latest_is_a_restart_when_its_seq_said_otherwise() -> None:
    """Booted, a car pulling in (a frame a second), rebooted, BOOT frame lost: seq 2 again
    seconds later, within the window, but not what seq 2 said before. A restart, not a copy."""
    boot = [(float(t), frame(t, 380 + 40 * t, FLAG_BOOT if t == 0 else 0)) for t in range(6)]
    assert arrivals(*boot, (15, frame(2, 600)), (16, frame(3, 610)))[-2:] == [
        (Arrival.RESTART, 2),
        (Arrival.NEXT, 0),
    ]


def test_a_boot_frame_repeated_late_is_a_duplicate_and_the_same_said_long_after_a_reboot() -> None:
    assert arrivals(
        (0, frame(0, flags=FLAG_BOOT)),
        (1, frame(1, 400)),
        (1.5, frame(0, flags=FLAG_BOOT)),  # the BOOT frame reported again after the next
        (200, frame(0, flags=FLAG_BOOT)),  # rebooted, and says what it said then
        (260, frame(1, 400)),
    ) == [
        (Arrival.FIRST, 0),
        (Arrival.NEXT, 0),
        (Arrival.DUPLICATE, 0),
        (Arrival.RESTART, 0),
        (Arrival.NEXT, 0),
    ]


def test_a_copy_later_than_the_latest_allows_is_no_longer_taken_for_one() -> None:
    late = (1 + LATE_MS / S + 0.001, frame(5))
    assert arrivals((0, frame(5)), (1, frame(6, 420)), late) == [
        (Arrival.FIRST, 0),
        (Arrival.NEXT, 0),
        (Arrival.RESTART, 5),  # seq 5 counting up again: a reboot whose frames 0-4 were lost
    ]


def test_the_wrap_is_no_reboot_and_copies_and_late_frames_across_it_are_known() -> None:
    assert arrivals(
        (0, frame(65534)),
        (1, frame(65535, 400)),
        (2, frame(0, 420)),  # not BOOT: the count wrapped
        (2.1, frame(65535, 400)),
        (3, frame(2, 440)),
        (3.1, frame(1, 430)),
        (4, frame(3, 450)),
    ) == [
        (Arrival.FIRST, 0),
        (Arrival.NEXT, 0),
        (Arrival.NEXT, 0),
        (Arrival.DUPLICATE, 0),
        (Arrival.AFTER_GAP, 1),
        (Arrival.LATE, 0),
        (Arrival.NEXT, 0),
    ]


def test_only_the_last_window_of_frames_is_kept() -> None:
    recent = RecentFrames()
    frames = [frame(seq, 380 + seq) for seq in range(1, 41)]
    for seq, f in enumerate(frames, start=1):
        assert recent.arrive(f, seq * S)[0] in (Arrival.FIRST, Arrival.NEXT)
    assert recent.arrive(frames[-WINDOW], 40 * S + 100) == (Arrival.DUPLICATE, 0)
    # One further back is forgotten: seq 24 again is a sensor counting up from 0 again.
    assert recent.arrive(frames[-WINDOW - 1], 40 * S + 200) == (Arrival.RESTART, 24)


# A sensor's frames as sent and heard in order: each step is seconds since the previous frame,
# how far its seq moves on (1, or more after lost frames; 0: a reboot, BOOT frame heard; None: a
# reboot whose BOOT frame was lost) and the reading.
sensor_steps = st.lists(
    st.tuples(
        st.floats(1, 90),
        st.sampled_from([1, 1, 1, 1, 2, 5, 0, None]),
        st.sampled_from([380, 380, 420, 600]),
        st.booleans(),  # DETECT
    ),
    min_size=1,
    max_size=40,
)
copies = st.lists(
    st.tuples(st.integers(0, 39), st.integers(0, WINDOW - 1), st.floats(0, 1)), max_size=30
)


@settings(max_examples=200, deadline=None)
@given(sensor_steps, copies, st.integers(0, 0xFFFF))
def test_copies_of_recent_frames_change_nothing(
    steps: list[tuple[float, int | None, int, bool]],
    copied: list[tuple[int, int, float]],
    first_seq: int,
) -> None:
    """Copies of any of the last WINDOW frames taken, each delivered within LATE_MS of the latest
    and before the next, are duplicates, and every other frame stands where it stood without
    them."""
    sent: list[tuple[int, Frame]] = []
    t, seq = 0, first_seq
    for delay, step, mz, detect in steps:
        t += round(delay * S)
        flags = FLAG_DETECT if detect else 0
        if step == 0:
            seq, flags = 0, flags | FLAG_BOOT
        elif step is None:
            seq = 1 + seq % 3
        else:
            seq = (seq + step) & 0xFFFF
        sent.append((t, frame(seq, mz, flags)))
    plain = RecentFrames()
    alone = [plain.arrive(f, at) for at, f in sent]
    taken = [f for (_, f), (arrival, _) in zip(sent, alone, strict=True) if arrival not in DROPPED]

    recent = RecentFrames()
    heard: list[tuple[Arrival, int]] = []
    kept: list[tuple[int, Frame]] = []  # (when, frame) taken
    for i, (at, f) in enumerate(sent):
        heard.append(recent.arrive(f, at))
        if heard[-1][0] not in DROPPED:
            kept.append((at, f))
        upto = sent[i + 1][0] if i + 1 < len(sent) else at + LATE_MS
        for after, back, when in copied:
            if after != i or back >= len(kept):
                continue
            # A copy of the latest whenever it comes; of an older one within LATE_MS of it.
            until = upto if back == 0 else min(upto, kept[-1][0] + LATE_MS)
            if until >= at:
                copy = kept[-1 - back][1]
                assert recent.arrive(copy, at + round((until - at) * when)) == (
                    Arrival.DUPLICATE,
                    0,
                )
    assert heard == alone
    assert [f for _, f in kept] == taken


DROPPED = (Arrival.DUPLICATE, Arrival.LATE)
