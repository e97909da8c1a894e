"""Who may log in to the dashboard: one login per role, from settings.

Roles: ``admin`` (look and act) and ``viewer`` (look only). With no ``ADMIN_PASSWORD`` the
dashboard is off (404), never open. Each session stores a fingerprint of the password it
was opened with; a process started with another password finds no match and ends it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal, NamedTuple

from imagequeue_common.settings import Settings

Role = Literal["admin", "viewer"]
_SALT = b"imagequeue-dashboard-session\0"


class _Login(NamedTuple):
    username: str
    password: str
    role: Role


def fingerprint(username: str, password: str) -> str:
    """A one-way fingerprint of a login's password, as sessions store it.

    scrypt (about 45 ms, once per login per process), salted with the username: Redis holds
    fingerprints, and a password is guessable where a random token is not, so reading
    Redis must not make guessing it cheap.
    """
    salt = _SALT + username.encode()
    return hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=16).hex()


class Logins:
    """The configured logins and their current password fingerprints."""

    def __init__(self, settings: Settings) -> None:
        candidates = [
            _Login(settings.admin_username, settings.admin_password, "admin"),
            _Login(settings.admin_readonly_username, settings.admin_readonly_password, "viewer"),
        ]
        self._logins = [login for login in candidates if login.password]
        self._fingerprints = {
            (login.username, login.role): fingerprint(login.username, login.password)
            for login in self._logins
        }

    def check(self, username: str, password: str) -> Role | None:
        """The role these credentials open, compared in constant time against every login."""
        role: Role | None = None
        for login in self._logins:
            same_user = hmac.compare_digest(username.encode(), login.username.encode())
            same_secret = hmac.compare_digest(password.encode(), login.password.encode())
            if same_user and same_secret:
                role = login.role
        return role

    def fingerprint(self, username: str, role: Role) -> str:
        """The current fingerprint of ``username``'s password (a login :meth:`check` opened)."""
        return self._fingerprints[(username, role)]

    def still_valid(self, username: str, role: Role, fingerprinted: str) -> bool:
        """Whether a session opened as ``username``/``role`` with a password of fingerprint
        ``fingerprinted`` still matches a login (False once the password or name changed)."""
        current = self._fingerprints.get((username, role))
        return current is not None and hmac.compare_digest(current, fingerprinted)


def dashboard_on(settings: Settings) -> bool:
    """True when an admin password is configured."""
    return bool(settings.admin_password)
