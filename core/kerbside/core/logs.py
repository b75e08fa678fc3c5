"""One logging setup for every Kerbside program: plain lines on a terminal, journald priorities
under systemd, JSON lines for log shippers.

- ``text`` on a terminal: ``2026-11-26 08:00:05,120 WARNING kerbside.edge.agent: message``.
- ``text`` under systemd (``JOURNAL_STREAM`` names the stream stderr is connected to): the
  journal stamps every line itself, so the line carries no time, and it starts with the syslog
  priority in angle brackets (``<4>kerbside.edge.agent: message``), which journald turns into the
  entry's PRIORITY (``journalctl -p warning`` then works).
- ``json``: one object per line, ``{"ts", "level", "logger", "message"}`` plus ``"exc"`` with the
  traceback when there is one, for Vector, Fluent Bit, Promtail and the like.

The format chosen is left in ``KERBSIDE_LOG_FORMAT`` for child processes (the collector's MQTT
link), which log the same way without being told.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Literal, TextIO

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")

# logging level -> syslog priority (sd-daemon(3): <3> error, <4> warning, <6> info, <7> debug)
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def _priority(levelno: int) -> int:
    for level in sorted(_PRIORITY, reverse=True):
        if levelno >= level:
            return _PRIORITY[level]
    return 7


class JournalFormatter(logging.Formatter):
    """``<priority>logger: message``; a traceback's lines keep the record's priority."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_priority(record.levelno)}>"
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return "\n".join(prefix + line for line in text.splitlines())


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, ensure_ascii=False)


def under_journald(stream: TextIO) -> bool:
    """Whether ``stream`` is the journal stream systemd connected us to (``JOURNAL_STREAM`` is
    ``device:inode`` of it; a child whose stderr was redirected elsewhere must not use it)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in value.split(":"))
        info = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


FORMAT_ENV = "KERBSIDE_LOG_FORMAT"


def setup_logging(level: str = "INFO", log_format: str | None = None) -> None:
    """Configure the root logger for a program's whole run (stderr only); ``log_format`` None
    takes the parent's (``KERBSIDE_LOG_FORMAT``), else ``text``."""
    if log_format is None:
        log_format = os.environ.get(FORMAT_ENV, "text")
    os.environ[FORMAT_ENV] = log_format
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    elif under_journald(sys.stderr):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def add_logging_options(parser: argparse.ArgumentParser) -> None:
    """``--log-level`` and ``--log-format`` on a program's parser."""
    add = parser.add_argument
    add("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    add(
        "--log-format",
        default="text",
        choices=LOG_FORMATS,
        help="text (default; under systemd without timestamps, with journal priorities) or "
        "json (one object per line, for log shippers)",
    )
