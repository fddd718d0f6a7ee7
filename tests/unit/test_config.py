"""Settings from the environment: defaults, pass-through Kafka options, secret hygiene."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwledger.deploy.config import Settings, kafka_option_name
from hwledger.schemas.errors import ConfigError, UserError
from hwledger.schemas.secrets import check_database_url


def test_defaults(tmp_path: Path) -> None:
    s = Settings.from_env({"HWLEDGER_HOME": str(tmp_path)})
    assert (s.topic, s.partitions, s.database_url, s.kafka_bootstrap) == (
        "hwledger.events", 6, None, None)


def test_kafka_security_settings_pass_through() -> None:
    s = Settings.from_env({
        "HWLEDGER_KAFKA_BOOTSTRAP": "kafka:9093",
        "HWLEDGER_KAFKA_OPT_SECURITY_PROTOCOL": "SASL_SSL",
        "HWLEDGER_KAFKA_OPT_SASL_MECHANISM": "SCRAM-SHA-512",
        "HWLEDGER_KAFKA_OPT_SASL_PASSWORD": "hunter2",
        "HWLEDGER_KAFKA_OPT_SSL_CA_LOCATION": "/etc/ssl/ca.pem",
    })
    config = s.kafka_config(**{"client.id": "x"})
    assert config == {"bootstrap.servers": "kafka:9093", "security.protocol": "SASL_SSL",
                      "sasl.mechanism": "SCRAM-SHA-512", "sasl.password": "hunter2",
                      "ssl.ca.location": "/etc/ssl/ca.pem", "client.id": "x"}


def test_double_underscore_names_a_literal_underscore() -> None:
    assert kafka_option_name("HWLEDGER_KAFKA_OPT_LOG__LEVEL") == "log_level"
    assert kafka_option_name("HWLEDGER_KAFKA_OPT_LOG_LEVEL") == "log.level"
    assert kafka_option_name("HWLEDGER_KAFKA_OPT_TOPIC_METADATA_REFRESH_INTERVAL_MS") == (
        "topic.metadata.refresh.interval.ms")


def test_client_properties_file_names_properties_exactly(tmp_path: Path) -> None:
    properties = tmp_path / "client.properties"
    properties.write_text("# TLS\nsecurity.protocol = SSL\n\n! old style comment\n"
                          "log_level=7\nsasl.jaas.config=a=b\n")
    s = Settings.from_env({"HWLEDGER_KAFKA_BOOTSTRAP": "k:9",
                           "HWLEDGER_KAFKA_CONFIG_FILE": str(properties),
                           "HWLEDGER_KAFKA_OPT_SECURITY_PROTOCOL": "SASL_SSL"})
    assert s.kafka_config() == {"bootstrap.servers": "k:9", "security.protocol": "SASL_SSL",
                                "log_level": "7", "sasl.jaas.config": "a=b"}


def test_bad_client_properties_files_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read it"):
        Settings.from_env({"HWLEDGER_KAFKA_CONFIG_FILE": str(tmp_path / "missing")})
    broken = tmp_path / "broken.properties"
    broken.write_text("acks=all\nlinger.ms\n")
    with pytest.raises(ConfigError, match=r"broken.properties:2: expected name=value"):
        Settings.from_env({"HWLEDGER_KAFKA_CONFIG_FILE": str(broken)})


def test_missing_servers_say_what_to_do(tmp_path: Path) -> None:
    s = Settings.from_env({"HWLEDGER_HOME": str(tmp_path)})
    with pytest.raises(UserError, match="HWLEDGER_DATABASE_URL"):
        s.require_database_url()
    with pytest.raises(UserError, match="HWLEDGER_KAFKA_BOOTSTRAP"):
        s.kafka_config()


def test_bad_integers_are_user_errors() -> None:
    with pytest.raises(UserError, match="HWLEDGER_PARTITIONS='many' is not an integer"):
        Settings.from_env({"HWLEDGER_PARTITIONS": "many"})


def test_local_stack_file_fills_unset_addresses(tmp_path: Path) -> None:
    (tmp_path / "stack.json").write_text(
        '{"database_url": "postgresql://l/db", "kafka_bootstrap": "127.0.0.1:1"}')
    s = Settings.from_env({"HWLEDGER_HOME": str(tmp_path), "HWLEDGER_KAFKA_BOOTSTRAP": "k:9"})
    assert (s.database_url, s.kafka_bootstrap) == ("postgresql://l/db", "k:9")


def test_listeners_bind_to_loopback_unless_configured() -> None:
    defaults = Settings.from_env({})
    assert (defaults.http_host, defaults.metrics_host) == ("127.0.0.1", "127.0.0.1")
    chosen = Settings.from_env({"HWLEDGER_METRICS_HOST": "0.0.0.0"})
    assert chosen.metrics_host == "0.0.0.0"


@pytest.mark.parametrize("url", [
    "postgresql://hwledger:s3cret@db.example:5432/hwledger?sslmode=require",
    "postgres://h1:5432,h2:5433/hwledger",
    "postgresql:///hwledger",
    "host=db port=5432 dbname=hwledger user=ro",
])
def test_database_urls_libpq_accepts_pass(url: str) -> None:
    assert check_database_url(url) == url


@pytest.mark.parametrize(("url", "cause"), [
    ("postgresql://u:pw@h:99999/x", "port '99999' is not a port number"),
    ("postgresql://u:pw@h1:5432,h2:x/db", "port 'x' is not a port number"),
    ("postgresql://u:p w@h/x", 'unexpected spaces found in "***"'),
])
def test_a_malformed_database_url_names_the_setting_without_the_password(url: str,
                                                                         cause: str) -> None:
    with pytest.raises(ConfigError) as raised:
        check_database_url(url, "HWLEDGER_QUERY_DATABASE_URL")
    message = str(raised.value)
    assert message.startswith("HWLEDGER_QUERY_DATABASE_URL") and cause in message
    assert "pw" not in message and "p w" not in message


def test_query_limits_come_from_the_environment(tmp_path: Path) -> None:
    from hwledger.deploy.commands.query import service_for
    from hwledger.query.limits import Limits

    env = {"HWLEDGER_HOME": str(tmp_path), "HWLEDGER_QUERY_DATABASE_URL": "postgresql://q@h/d",
           "HWLEDGER_QUERY_MAX_PLACEMENT_STEPS": "50", "HWLEDGER_QUERY_TIME_BUDGET_MS": "250",
           "HWLEDGER_QUERY_MAX_ANSWER_BYTES": "4096", "HWLEDGER_QUERY_WORKERS": "3"}
    service = service_for(Settings.from_env(env))
    assert service.limits == Limits(max_placement_steps=50, time_budget_seconds=0.25,
                                    max_answer_bytes=4096, workers=3)
    assert service.connections.statement_timeout_ms == 250
    service.engine.dispose()
    with pytest.raises(UserError, match="HWLEDGER_QUERY_WORKERS=0 must be at least 1"):
        Settings.from_env({**env, "HWLEDGER_QUERY_WORKERS": "0"})


def test_database_urls_can_come_from_secret_files(tmp_path: Path) -> None:
    owner, reader = tmp_path / "owner", tmp_path / "reader"
    owner.write_text("postgresql://hwledger:s%40cret@db/hw\n")
    reader.write_text("postgresql://hwledger_query:pw@db/hw")
    s = Settings.from_env({"HWLEDGER_DATABASE_URL_FILE": str(owner),
                           "HWLEDGER_QUERY_DATABASE_URL_FILE": str(reader)})
    assert (s.database_url, s.query_database_url) == (
        "postgresql://hwledger:s%40cret@db/hw", "postgresql://hwledger_query:pw@db/hw")
    with pytest.raises(ConfigError, match="not both"):
        Settings.from_env({"HWLEDGER_DATABASE_URL_FILE": str(owner),
                           "HWLEDGER_DATABASE_URL": "postgresql://db/hw"})
    with pytest.raises(ConfigError, match=r"HWLEDGER_DATABASE_URL_FILE=.*cannot read it"):
        Settings.from_env({"HWLEDGER_DATABASE_URL_FILE": str(tmp_path / "missing")})
    owner.write_bytes(b"postgresql://u:\xff@db/hw")
    with pytest.raises(ConfigError, match=r"not UTF-8 text$"):
        Settings.from_env({"HWLEDGER_DATABASE_URL_FILE": str(owner)})


def test_the_state_folder_defaults_to_the_xdg_state_directory(tmp_path: Path) -> None:
    assert Settings.from_env({"XDG_STATE_HOME": str(tmp_path)}).home == tmp_path / "hwledger"
    assert Settings.from_env({}).home == Path.home() / ".local" / "state" / "hwledger"
    assert Settings.from_env({"HWLEDGER_HOME": "/srv/hw", "XDG_STATE_HOME": str(tmp_path)}
                             ).home == Path("/srv/hw")


def test_the_gpu_sample_rate_comes_from_the_environment(tmp_path: Path) -> None:
    home = {"HWLEDGER_HOME": str(tmp_path)}
    assert Settings.from_env(home).gpu_sample_hz == 10.0
    assert Settings.from_env(home | {"HWLEDGER_GPU_SAMPLE_HZ": "2.5"}).gpu_sample_hz == 2.5
    assert Settings.from_env(home | {"HWLEDGER_GPU_SAMPLE_HZ": "0"}).gpu_sample_hz == 0
    for bad in ("-1", "fast", "nan"):
        with pytest.raises(UserError, match=f"HWLEDGER_GPU_SAMPLE_HZ='{bad}'"):
            Settings.from_env(home | {"HWLEDGER_GPU_SAMPLE_HZ": bad})
