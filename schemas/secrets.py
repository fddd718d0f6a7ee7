"""Secrets out of every output: `redact` masks passwords in any text before it is shown.

One function covers every spelling a database URL, a libpq DSN or a Kafka config dump can
carry a password in: URL userinfo (also with an unencoded `@`, `:` or `/` in the password, or
an empty user), `password=` / `sslpassword=` query parameters, libpq `key=value` pairs (quoted
values with escapes too), `name=value` properties and environment lines (`sasl.password=...`,
`HWLEDGER_KAFKA_OPT_SASL_PASSWORD=...`) and quoted `'name': 'value'` pairs of a dict or JSON
dump. A name is secret when it holds `password`, `passwd` or `secret`, or `key` as a word
of a dotted or underscored name (`ssl.key.pem`), without regard to case.
`RedactingFormatter` applies it to log lines.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from hwledger.schemas.errors import ConfigError

MASK = "***"
_SECRET_NAME = r"[\w.-]*(?:password|passwd|secret|(?<=[._-])key(?![a-z]))[\w.-]*"
_USERINFO = re.compile(r"(?P<keep>[a-z][a-z0-9+.-]*://[^:@/\s]*:)[^\n]*@", re.IGNORECASE)
_QUERY_PARAMETER = re.compile(rf"(?P<keep>[?&]{_SECRET_NAME}=)[^&#\s]*", re.IGNORECASE)
_KEY_VALUE = re.compile(
    rf"(?P<keep>(?<![?&\w.-]){_SECRET_NAME}\s*=\s*)(?:'(?:[^'\\]|\\.)*'?|\S*)",
    re.IGNORECASE)
_QUOTED_PAIR = re.compile(
    rf"""(?P<keep>(?P<q>['"]){_SECRET_NAME}(?P=q)\s*:\s*)(?P<v>['"])(?:\\.|(?!(?P=v)).)*(?P=v)?""",
    re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with every password it spells replaced by `***`, safe for logs, screens and
    error messages. Masks generously: a URL's userinfo password runs to the last `@` on its
    line, so an unencoded `@` or `/` in it is masked too."""
    text = _USERINFO.sub(rf"\g<keep>{MASK}@", text)
    text = _QUERY_PARAMETER.sub(rf"\g<keep>{MASK}", text)
    text = _KEY_VALUE.sub(rf"\g<keep>{MASK}", text)
    return _QUOTED_PAIR.sub(rf"\g<keep>\g<v>{MASK}\g<v>", text)


def check_database_url(url: str, setting: str = "HWLEDGER_DATABASE_URL") -> str:
    """`url` when libpq can use it safely: parseable (a URL or `key=value` conninfo), every
    port a number, and no unencoded `@` or `/` in its user or password (libpq would read part
    of the password as the host name and echo it in its errors). Else a one-line ConfigError
    naming `setting` that never shows the password."""
    _, separator, rest = url.partition("://")
    if separator and "@" in rest:
        userinfo = rest.split("?", 1)[0].rsplit("@", 1)[0]
        if "@" in userinfo or "/" in userinfo:
            raise ConfigError(f"{setting}: the user name or password holds an unencoded '@' "
                              "or '/'; percent-encode it (%40 for @, %2F for /)")
    try:
        ports = str(conninfo_to_dict(url).get("port") or "")
    except psycopg.ProgrammingError as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "cannot parse it"
        password = urlsplit(url).password if separator else None
        if password:
            detail = detail.replace(password, MASK)
        raise ConfigError(f"{setting} is not a valid PostgreSQL URL: {redact(detail)}") from None
    for port in filter(None, ports.split(",")):
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{setting}={redact(url)}: port {port!r} is not a port number")
    return url


class RedactingFormatter(logging.Formatter):
    """A log formatter whose lines (tracebacks included) went through `redact`."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonRedactingFormatter(logging.Formatter):
    """One JSON object a line (`time` in UTC ISO 8601, `level`, `logger`, `message`, and
    `exception` with its traceback), every text through `redact`, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name,
            "message": redact(record.getMessage())}
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(line)
