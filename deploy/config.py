"""Settings from the environment, in one place.

Every knob is an `HWLEDGER_*` variable (listed in ENV_VARS, which the deploy-file checks use).
Kafka client settings pass through, so SASL/TLS work without code changes: a client properties
file (`HWLEDGER_KAFKA_CONFIG_FILE`, lines `name=value`) names librdkafka properties exactly, and
`HWLEDGER_KAFKA_OPT_<NAME>` variables override it, with `_` read as `.` and `__` as a literal `_`
(`HWLEDGER_KAFKA_OPT_SECURITY_PROTOCOL` is `security.protocol`, `..._LOG__LEVEL` is `log_level`).
When no database or broker is named, the addresses of the local stack started by
`hwledger dev up` are used.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hwledger.schemas.errors import ConfigError, UserError
from hwledger.schemas.secrets import check_database_url
from hwledger.schemas.signatures import AUDITOR_KEYS_SETTING, load_auditor_keys

KAFKA_OPT_PREFIX = "HWLEDGER_KAFKA_OPT_"
KAFKA_CONFIG_FILE = "HWLEDGER_KAFKA_CONFIG_FILE"
SECRET_WORDS = ("password", "secret", "token", "key")
ENV_VARS = {
    "HWLEDGER_DATABASE_URL": "Postgres URL for migrations and projectors (read-write)",
    "HWLEDGER_DATABASE_URL_FILE": "a file holding HWLEDGER_DATABASE_URL (a mounted secret)",
    "HWLEDGER_QUERY_DATABASE_URL": "Postgres URL for the query service's read-only role",
    "HWLEDGER_QUERY_DATABASE_URL_FILE": "a file holding HWLEDGER_QUERY_DATABASE_URL",
    "HWLEDGER_QUERY_ALLOW_WRITABLE_ROLE": "1: let the query service run on a role that can write",
    "HWLEDGER_KAFKA_BOOTSTRAP": "Kafka bootstrap servers, host:port[,host:port]",
    KAFKA_CONFIG_FILE: "Kafka client properties file, name=value lines (librdkafka names)",
    "HWLEDGER_TOPIC": "events topic (default hwledger.events)",
    "HWLEDGER_PARTITIONS": "partitions when hwledger creates the topic (default 6)",
    "HWLEDGER_DB_SCHEMA": "Postgres schema to project into (default: the active schema)",
    "HWLEDGER_HOME": "state folder: local stack data, spool, node id (default "
                     "$XDG_STATE_HOME/hwledger, else ~/.local/state/hwledger)",
    "HWLEDGER_PROJECTOR_STALL_SECONDS": "the projector's /healthz fails when its loop has not "
                                        "polled for this long (default 60)",
    "HWLEDGER_LOG_FORMAT": "text (default) or json: one JSON object per log line",
    "HWLEDGER_ACCESS_LOG": "1: the query service logs every request (method, path, status)",
    "HWLEDGER_BROKER": "local stack broker: kafka (Apache Kafka, durable) or tansu (memory-only); "
                       "default kafka when Java 17+ is on PATH",
    "HWLEDGER_ONLINE_TTL_SECONDS": "a provider is online if seen within this many seconds",
    "HWLEDGER_HTTP_HOST": "query service bind address (default 127.0.0.1)",
    "HWLEDGER_HTTP_PORT": "query service port (default 8080)",
    "HWLEDGER_QUERY_MAX_PLACEMENT_STEPS": "bin-packer steps (units x nodes, summed over the "
                                          "candidates) one request may take (default 100000)",
    "HWLEDGER_QUERY_TIME_BUDGET_MS": "time budget of one screening request (default 2000)",
    "HWLEDGER_QUERY_MAX_ANSWER_BYTES": "largest screening answer (default 16777216)",
    "HWLEDGER_QUERY_WORKERS": "threads per service process for the bin-packer (default 2)",
    "HWLEDGER_METRICS_HOST": "projector Prometheus bind address (default 127.0.0.1)",
    "HWLEDGER_METRICS_PORT": "projector Prometheus port (default 9464, 0 = off)",
    "HWLEDGER_PARK_TTL_SECONDS": "event-time seconds before a parked event is a dead letter",
    "HWLEDGER_PROVIDER_ID": "provider id this host publishes under",
    "HWLEDGER_NODE_ID": "override the node id derived from /etc/machine-id",
    "HWLEDGER_GPU_SAMPLE_HZ": "runner library: samples per second of a run's GPUs (power, "
                              "memory, utilisation) while it runs (default 10, 0 = off)",
    "HWLEDGER_ALLOCATABLE_CPU_MILLICORES": "CPU offered to runs, -1 = unlimited "
                                           "(default: threads x 1000)",
    "HWLEDGER_ALLOCATABLE_MEMORY": "memory offered to runs, e.g. 1400Gi, -1 = unlimited "
                                   "(default: all RAM)",
    "HWLEDGER_ALLOCATABLE_EPHEMERAL_STORAGE": "ephemeral storage offered, -1 = unlimited "
                                              "(default: / size)",
    "HWLEDGER_STORAGE_CLASSES": "persistent storage, class=quantity[,...] e.g. beta3=7000Gi",
    AUDITOR_KEYS_SETTING: "auditors' public keys (JSON file); unset: audits are not verified",
}


def default_home(env: Mapping[str, str]) -> Path:
    """The state folder when HWLEDGER_HOME is unset: the user's XDG state directory, the same
    from any working directory, so `hwledger status` finds the stack `dev up` started."""
    state = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "hwledger"


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str | None:
    raw = (env.get(name) or "").strip().lower()
    if raw and raw not in choices:
        raise UserError(f"{name}={env[name]!r} must be one of {', '.join(choices)}")
    return raw or None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise UserError(f"{name}={raw!r} is not an integer") from None


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if value < 1:
        raise UserError(f"{name}={value} must be at least 1")
    return value


def _rate(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UserError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise UserError(f"{name}={raw!r} must be 0 (off) or a positive number")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = (env.get(name) or "0").strip().lower()
    if raw not in ("0", "1", "false", "true"):
        raise ConfigError(f"{name}={raw!r}: use 1 (or true) to turn it on, 0 to leave it off")
    return raw in ("1", "true")


def _url(env: Mapping[str, str], name: str) -> str | None:
    """The URL in variable `name`, or in the file `name`_FILE names (a mounted secret)."""
    raw, path = env.get(name), env.get(f"{name}_FILE")
    if path:
        if raw:
            raise ConfigError(f"set {name} or {name}_FILE, not both")
        try:
            raw = Path(path).read_text("utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE={path}: cannot read it ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{name}_FILE={path}: not UTF-8 text") from None
    return check_database_url(raw, name) if raw else None


def kafka_option_name(variable: str) -> str:
    """The librdkafka property an HWLEDGER_KAFKA_OPT_* variable names: `_` is `.`, `__` is `_`."""
    words = variable.removeprefix(KAFKA_OPT_PREFIX).lower().split("__")
    return "_".join(word.replace("_", ".") for word in words)


def parse_client_properties(text: str, source: str) -> dict[str, str]:
    """`name=value` lines (`#` or `!` starts a comment line), the Kafka client file format."""
    properties: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        name, separator, value = line.partition("=")
        if not separator or not name.strip():
            raise ConfigError(f"{source}:{number}: expected name=value, got {line!r}")
        properties[name.strip()] = value.strip()
    return properties


def kafka_options(env: Mapping[str, str]) -> dict[str, str]:
    """librdkafka properties from HWLEDGER_KAFKA_CONFIG_FILE, then HWLEDGER_KAFKA_OPT_*."""
    path = env.get(KAFKA_CONFIG_FILE)
    from_file: dict[str, str] = {}
    if path:
        try:
            text = Path(path).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{KAFKA_CONFIG_FILE}={path}: cannot read it ({exc})") from None
        from_file = parse_client_properties(text, path)
    return from_file | {
        kafka_option_name(name): value
        for name, value in env.items()
        if name.startswith(KAFKA_OPT_PREFIX)
    }


@dataclass(frozen=True)
class Settings:
    """Resolved configuration; construct with `Settings.from_env()`."""

    database_url: str | None = None
    query_database_url: str | None = None
    query_allow_writable_role: bool = False
    kafka_bootstrap: str | None = None
    broker: str | None = None
    topic: str = "hwledger.events"
    partitions: int = 6
    db_schema: str | None = None
    home: Path = field(default_factory=lambda: default_home(os.environ))
    online_ttl_seconds: int = 900
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    query_max_placement_steps: int = 100_000
    query_time_budget_ms: int = 2000
    query_max_answer_bytes: int = 16 * 2**20
    query_workers: int = 2
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    park_ttl_seconds: int = 21600
    projector_stall_seconds: int = 60
    log_format: str = "text"
    access_log: bool = False
    provider_id: str | None = None
    node_id: str | None = None
    gpu_sample_hz: float = 10.0
    auditor_keys_file: Path | None = None
    kafka_extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        partitions = _positive(env, "HWLEDGER_PARTITIONS", 6)
        return cls(
            database_url=_url(env, "HWLEDGER_DATABASE_URL"),
            query_database_url=_url(env, "HWLEDGER_QUERY_DATABASE_URL"),
            query_allow_writable_role=_flag(env, "HWLEDGER_QUERY_ALLOW_WRITABLE_ROLE"),
            kafka_bootstrap=env.get("HWLEDGER_KAFKA_BOOTSTRAP") or None,
            broker=_choice(env, "HWLEDGER_BROKER", ("kafka", "tansu")),
            topic=env.get("HWLEDGER_TOPIC") or "hwledger.events",
            partitions=partitions,
            db_schema=env.get("HWLEDGER_DB_SCHEMA") or None,
            home=Path(env.get("HWLEDGER_HOME") or default_home(env)),
            online_ttl_seconds=_int(env, "HWLEDGER_ONLINE_TTL_SECONDS", 900),
            http_host=env.get("HWLEDGER_HTTP_HOST") or "127.0.0.1",
            http_port=_int(env, "HWLEDGER_HTTP_PORT", 8080),
            query_max_placement_steps=_positive(env, "HWLEDGER_QUERY_MAX_PLACEMENT_STEPS",
                                                100_000),
            query_time_budget_ms=_positive(env, "HWLEDGER_QUERY_TIME_BUDGET_MS", 2000),
            query_max_answer_bytes=_positive(env, "HWLEDGER_QUERY_MAX_ANSWER_BYTES", 16 * 2**20),
            query_workers=_positive(env, "HWLEDGER_QUERY_WORKERS", 2),
            metrics_host=env.get("HWLEDGER_METRICS_HOST") or "127.0.0.1",
            metrics_port=_int(env, "HWLEDGER_METRICS_PORT", 9464),
            park_ttl_seconds=_int(env, "HWLEDGER_PARK_TTL_SECONDS", 21600),
            projector_stall_seconds=_positive(env, "HWLEDGER_PROJECTOR_STALL_SECONDS", 60),
            log_format=_choice(env, "HWLEDGER_LOG_FORMAT", ("text", "json")) or "text",
            access_log=_flag(env, "HWLEDGER_ACCESS_LOG"),
            provider_id=env.get("HWLEDGER_PROVIDER_ID") or None,
            node_id=env.get("HWLEDGER_NODE_ID") or None,
            gpu_sample_hz=_rate(env, "HWLEDGER_GPU_SAMPLE_HZ", 10.0),
            auditor_keys_file=Path(env[AUDITOR_KEYS_SETTING]) if env.get(AUDITOR_KEYS_SETTING)
            else None,
            kafka_extra=kafka_options(env),
        ).with_local_stack()

    def with_local_stack(self) -> Settings:
        """Fill unset server addresses from `HOME/stack.json` written by `hwledger dev up`."""
        stack_file = self.home / "stack.json"
        if (self.database_url and self.kafka_bootstrap) or not stack_file.exists():
            return self
        try:
            stack = json.loads(stack_file.read_text("utf-8"))
        except (OSError, json.JSONDecodeError):
            return self
        stack_database = not self.database_url
        return replace(
            self,
            database_url=self.database_url or stack.get("database_url"),
            query_database_url=self.query_database_url or (
                stack.get("query_database_url") if stack_database else None),
            kafka_bootstrap=self.kafka_bootstrap or stack.get("kafka_bootstrap"),
        )

    def require_database_url(self) -> str:
        if not self.database_url:
            raise UserError("no database configured: set HWLEDGER_DATABASE_URL or run "
                            "`hwledger dev up --detach` to start the local stack")
        return self.database_url

    def require_query_database_url(self) -> str:
        return self.query_database_url or self.require_database_url()

    def auditor_keys(self) -> dict[str, tuple[bytes, ...]] | None:
        """The auditor keys audits are verified with; None (not verified) when unset."""
        if self.auditor_keys_file is None:
            return None
        return load_auditor_keys(self.auditor_keys_file)

    def query_url_setting(self) -> str:
        """The variable whose URL the query service connects with."""
        return "HWLEDGER_QUERY_DATABASE_URL" if self.query_database_url else (
            "HWLEDGER_DATABASE_URL")

    def checked_query_database_url(self) -> str:
        """The query service's URL once its role proved read-only (schemas/roles.py), unless
        HWLEDGER_QUERY_ALLOW_WRITABLE_ROLE allows any role."""
        from hwledger.schemas.roles import check_query_role

        url = self.require_query_database_url()
        if not self.query_allow_writable_role:
            check_query_role(url, self.db_schema, self.query_url_setting())
        return url

    def kafka_config(self, **overrides: Any) -> dict[str, Any]:
        """Base librdkafka config: bootstrap servers plus the pass-through options."""
        if not self.kafka_bootstrap:
            raise UserError("no Kafka broker configured: set HWLEDGER_KAFKA_BOOTSTRAP or run "
                            "`hwledger dev up --detach` to start the local stack")
        return {"bootstrap.servers": self.kafka_bootstrap, **self.kafka_extra, **overrides}
