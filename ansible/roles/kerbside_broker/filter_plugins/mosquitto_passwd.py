"""Mosquitto password file lines, computed on the controller so that re-runs change nothing.

Mosquitto 2 stores ``user:$7$101$<salt>$<hash>``: PBKDF2-HMAC-SHA512, 101 iterations, 12-byte
salt, base64. ``mosquitto_passwd -b`` draws a new salt on every call, so a role calling it could
never report "unchanged". This filter keeps an existing line whose hash still matches the wanted
password and draws a fresh random salt only for new users and changed passwords.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

ITERATIONS = 101


def _hash_line(username: str, password: str, salt: bytes) -> str:
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, ITERATIONS)
    return "{}:$7${}${}${}".format(
        username, ITERATIONS, base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
    )


def _matches(line: str, username: str, password: str) -> bool:
    user, _, stored = line.partition(":")
    parts = stored.split("$")
    if user != username or len(parts) != 5 or parts[1] != "7":
        return False
    try:
        salt = base64.b64decode(parts[3])
        iterations = int(parts[2])
    except ValueError:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return hmac.compare_digest(base64.b64encode(digest).decode(), parts[4])


def mosquitto_passwd(users, existing=""):
    """users: {username: password}; existing: the current file's text (may be empty)."""
    current = {}
    for line in (existing or "").splitlines():
        if ":" in line:
            current[line.split(":", 1)[0]] = line.strip()
    lines = []
    for username in sorted(users):
        password = str(users[username])
        if not password:
            raise ValueError(f"mosquitto_passwd: empty password for {username}")
        old = current.get(username, "")
        if old and _matches(old, username, password):
            lines.append(old)
        else:
            lines.append(_hash_line(username, password, os.urandom(12)))
    return "\n".join(lines) + "\n"


class FilterModule:
    def filters(self):
        return {"mosquitto_passwd": mosquitto_passwd}
