"""Which payment or permit an officer should see on an alert's card: "Paid until 10:00",
"Permit until 18:30 (ended)".

Of the rights that covered the bay (its own, or its zone's) at some instant of the stay so far,
``[arrival, now]``, the one that runs latest: for an ``expired`` alert, the right that ran out
(unless a later one covers the bay again); for an ``overstay``, the payment the driver made;
for ``unpaid``, none. A right bought for later is not held yet.
"""

from __future__ import annotations

from collections.abc import Iterable

from kerbside.collector.records import Right
from kerbside.core.instants import Instant


def right_held(rights: Iterable[Right], arrival: Instant, now: Instant) -> Right | None:
    held = [r for r in rights if r.start <= now and r.end > arrival]
    return max(held, key=lambda r: (r.end, r.start, r.right_id), default=None)
