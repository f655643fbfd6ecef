"""The ``upstream`` setting: where a near-cache store finds its Redis/Valkey server.

Parsed here, beside the settings table (``config.py``), so that a bad value is refused when the
settings are read, with a message that names the setting but never repeats the password.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = [
    "UPSTREAM_HELP",
    "UPSTREAM_SCHEMES",
    "UpstreamAddress",
    "checked_upstream",
    "parse_upstream",
]

#: Schemes an upstream may use: TCP, TLS, or a Unix socket (the same protocol for all).
UPSTREAM_SCHEMES = ("redis", "rediss", "valkey", "valkeys", "redis+unix", "valkey+unix")
_DEFAULT_PORT = 6379
#: The setting's help (``config.SETTINGS``).
UPSTREAM_HELP = (
    "keep this host's cache coherent with a Redis/Valkey server (redis://[user:pass@]"
    "host[:port][/db], rediss://, valkey://): reads are served locally, everything else"
    " goes there (prefer BLINKSTORE_UPSTREAM: flags are visible in ps)"
)


@dataclass(frozen=True)
class UpstreamAddress:
    """A parsed upstream URL; :attr:`display` is the URL without its password."""

    host: str = ""
    port: int = _DEFAULT_PORT
    unix_path: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @property
    def display(self) -> str:
        """Where the upstream is, for logs and ``INFO``: never the password."""
        user = f"{self.username}@" if self.username else ""
        if self.unix_path:
            return f"redis+unix://{user}{self.unix_path}?db={self.db}"
        scheme = "rediss" if self.tls else "redis"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{user}{host}:{self.port}/{self.db}"


def parse_upstream(url: str) -> UpstreamAddress:
    """Parse ``redis://[user:password@]host[:port][/db]`` (also ``rediss://``, ``valkey://``,
    ``valkeys://``, ``redis+unix:///path?db=N``). Raises ``ValueError`` without the password."""
    text = url.strip()
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme not in UPSTREAM_SCHEMES:
        raise ValueError(
            f"unsupported upstream scheme {scheme or '(none)'!r}: use "
            + ", ".join(f"{name}://" for name in UPSTREAM_SCHEMES)
        )
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError("malformed upstream URL (check the host and port)") from None
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password == "":
        raise ValueError("empty password in the upstream URL")
    db_text = query.pop("db", "") if scheme.endswith("+unix") else parts.path.strip("/")
    if query:
        raise ValueError(f"unknown upstream URL option(s): {', '.join(sorted(query))}")
    if db_text and not db_text.isdigit():
        raise ValueError(f"upstream database must be a number, not {db_text!r}")
    db = int(db_text or 0)
    if scheme.endswith("+unix"):
        if not parts.path:
            raise ValueError("redis+unix:// needs a socket path")
        return UpstreamAddress(unix_path=parts.path, db=db, username=username, password=password)
    if not parts.hostname:
        raise ValueError("the upstream URL needs a host")
    try:
        parts.hostname.encode("idna")  # what connecting does: refused now, not at each retry
    except UnicodeError:
        raise ValueError(f"malformed upstream host name {parts.hostname!r}") from None
    return UpstreamAddress(
        host=parts.hostname,
        port=port or _DEFAULT_PORT,
        db=db,
        username=username,
        password=password,
        tls=scheme in ("rediss", "valkeys"),
    )


def checked_upstream(value: str | int) -> str:
    """The setting's parser: the URL as given, once :func:`parse_upstream` accepts it."""
    url = str(value).strip()
    parse_upstream(url)
    return url
