"""Which zones this collector runs: its leases, until when it may act under each, and how the
collectors alive share the zones between them.

A lease is taken, renewed and released in the store (``store/pgcluster.py``), on the database's
clock. Here, on this collector's monotonic clock, each lease it holds is good until a moment
safely before the database could see it run out: ``lease_s`` minus a margin after the renewal
was *sent*. Past that moment, renewed or not (a database out of reach, a process paused), the
collector stops acting for the zone: the lease may be another's by now. ``Leases`` only keeps
those moments; the ``keeper`` in ``node.py`` does the I/O.

Sharing: each collector alive (by heartbeat) aims at ``ceil(leases / collectors)``. One below
its share takes leases that are free (run out, or never taken), one above it releases its
surplus, so a collector that joins gets its share within a few rounds and one that dies leaves
its zones to the others as soon as its leases run out. Which zones: by rendezvous hashing, each
collector prefers the zones that hash highest with its name, so the same zones go back to a
collector that restarts.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

# What a collector keeps in hand before the database could see its lease run out: a fifth of
# the lease, at least 0.2 s (clock rates differ by far less; a renewal's round trip is in it).
MARGIN_SHARE = 0.2
MARGIN_MIN_S = 0.2
# Renewals per lease: two chances to renew before the collector stops acting.
RENEWALS_PER_LEASE = 3


def acting_for(lease_s: float) -> float:
    """How long after sending a renewal (or a take) the collector may act under it."""
    return lease_s - max(lease_s * MARGIN_SHARE, MARGIN_MIN_S)


def preference(node: str, lease: str) -> int:
    """Rendezvous hashing: how much ``node`` wants ``lease`` (higher first)."""
    digest = hashlib.blake2b(f"{node}\0{lease}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class Leases:
    """The leases this collector holds (lease -> epoch) and until when it may act under each."""

    def __init__(self, lease_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.lease_s = lease_s
        self._clock = clock
        self.epochs: dict[str, int] = {}
        self._until: dict[str, float] = {}

    def now(self) -> float:
        """The clock leases are kept on (monotonic)."""
        return self._clock()

    def acting(self, lease: str) -> bool:
        """May this collector act for ``lease`` now (it holds it and its time has not run out)?"""
        until = self._until.get(lease)
        return until is not None and self._clock() < until

    def took(self, lease: str, epoch: int, asked_at: float) -> None:
        self.epochs[lease] = epoch
        self._until[lease] = asked_at + acting_for(self.lease_s)

    def renewed(self, leases: Iterable[str], asked_at: float) -> None:
        """The store renewed these (asked at ``asked_at``, before the statement was sent)."""
        until = asked_at + acting_for(self.lease_s)
        for lease in leases:
            if lease in self._until:
                # a renewal that took longer than a lease must not extend one already given up
                self._until[lease] = max(self._until[lease], until)

    def drop(self, leases: Iterable[str]) -> None:
        for lease in leases:
            self.epochs.pop(lease, None)
            self._until.pop(lease, None)

    def run_out(self) -> list[str]:
        """Leases held whose time is up on this collector's clock (not renewed in time)."""
        now = self._clock()
        return sorted(lease for lease, until in self._until.items() if now >= until)

    def next_end(self) -> float | None:
        return min(self._until.values(), default=None)

    def held(self) -> dict[str, int]:
        return dict(self.epochs)


@dataclass(frozen=True, slots=True)
class Plan:
    take: list[str]
    release: list[str]


def plan(
    node: str,
    alive: Collection[str],
    all_leases: Collection[str],
    holders: Mapping[str, str | None],
    held: Collection[str],
) -> Plan:
    """What ``node`` takes and releases this round. ``holders`` maps each lease to the collector
    whose lease has not run out (None, or absent: free); ``held`` is what ``node`` holds."""
    members = set(alive) | {node}
    share = math.ceil(len(all_leases) / len(members)) if all_leases else 0
    mine = [lease for lease in held if lease in all_leases]
    gone = [lease for lease in held if lease not in all_leases]  # a zone the site no longer has
    # free: run out or never taken, or still this collector's from before it restarted
    free = [
        lease for lease in all_leases if holders.get(lease) in (None, node) and lease not in held
    ]
    counts: dict[str, int] = dict.fromkeys(members, 0)
    for lease, holder in holders.items():
        if holder in counts and lease in all_leases:
            counts[holder] += 1
    counts[node] = len(mine)
    own = [lease for lease in free if holders.get(lease) == node]
    if len(mine) > share:
        surplus = sorted(mine, key=lambda lease: preference(node, lease))[: len(mine) - share]
        return Plan([], [*gone, *surplus])
    want = share - len(mine)
    if want == 0 and free and all(counts[m] >= share for m in members if m != node):
        want = 1  # every collector is full (one died, its heartbeat not yet run out): take anyway
    # its own first (taken back at once after a restart), then those it prefers
    chosen = sorted(free, key=lambda lease: (lease not in own, -preference(node, lease)))[:want]
    return Plan(chosen, gone)
