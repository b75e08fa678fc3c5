"""The gateway's clocks: wall-clock instants for stamping, and whether NTP has set the clock.

A Pi has no real-time clock: it boots at the last saved time and jumps when NTP catches up.
Events stamped before that would be wrong by hours, so the agent asks the kernel whether the
clock is synchronised. ``adjtimex(2)`` with no modes only reads: its ``STA_UNSYNC`` status bit
is cleared by the NTP daemon (systemd-timesyncd, chrony, ntpd) once it disciplines the clock.
Where that call is unavailable the agent falls back to ``timedatectl``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import shutil
import subprocess
import time

from kerbside.core.instants import Instant

log = logging.getLogger(__name__)

STA_UNSYNC = 0x0040
TIME_ERROR = 5


def now_ms() -> Instant:
    """Wall-clock epoch milliseconds."""
    return time.time_ns() // 1_000_000


class _Timex(ctypes.Structure):
    # struct timex of <sys/timex.h> (Linux, LP64 and ILP32 alike: longs are the word size).
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("padding", ctypes.c_int * 11),
    ]


def _adjtimex_synchronised() -> bool | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        timex = _Timex()  # modes = 0: read only, needs no privilege
        state = libc.adjtimex(ctypes.byref(timex))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != TIME_ERROR and not timex.status & STA_UNSYNC


def _timedatectl_synchronised() -> bool | None:
    binary = shutil.which("timedatectl")
    if binary is None:
        return None
    try:
        out = subprocess.run(  # noqa: S603  (a fixed argv, found on PATH)
            [binary, "show", "--property=NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"yes": True, "no": False}.get(out)


def is_synchronised() -> bool:
    """Whether the system clock is NTP-synchronised; False when nothing can tell."""
    for check in (_adjtimex_synchronised, _timedatectl_synchronised):
        answer = check()
        if answer is not None:
            return answer
    return False
