"""`redact` over every spelling of a password, with random passwords, and the URL check."""

from __future__ import annotations

import json
import logging
import re
import sys
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwledger.deploy.config import Settings
from hwledger.schemas.errors import ConfigError
from hwledger.schemas.secrets import (
    JsonRedactingFormatter,
    RedactingFormatter,
    check_database_url,
    redact,
)

ANY_LINE = st.text(st.characters(codec="utf-8", exclude_characters="\n"), min_size=1)
NO_SPACE = st.text(st.characters(codec="utf-8", exclude_categories=("Zs", "Zl", "Zp", "Cc")),
                   min_size=1).filter(lambda s: not s.startswith("'") and not s.isspace())


@given(ANY_LINE)
def test_userinfo_passwords_with_any_characters(password: str) -> None:
    for user in ("app", ""):
        assert redact(f"postgresql://{user}:{password}@db:5432/hw") == (
            f"postgresql://{user}:***@db:5432/hw")
    assert redact(f"cannot connect to PostgreSQL at postgres://app:{password}@127.0.0.1/hw "
                  "(HWLEDGER_DATABASE_URL): connection refused") == (
        "cannot connect to PostgreSQL at postgres://app:***@127.0.0.1/hw "
        "(HWLEDGER_DATABASE_URL): connection refused")


@pytest.mark.parametrize("name", ["password", "PassWord", "sslpassword", "SSLPASSWORD"])
@given(password=ANY_LINE)
def test_query_parameter_passwords(name: str, password: str) -> None:
    encoded = quote(password, safe="")
    for query in ("?{}={}&sslmode=require", "?sslmode=require&{}={}"):
        assert redact(f"postgresql://app@db/hw{query.format(name, encoded)} (X)") == (
            f"postgresql://app@db/hw{query.format(name, '***')} (X)")


@given(NO_SPACE, ANY_LINE)
def test_key_value_dsn_passwords_plain_and_quoted(plain: str, spaced: str) -> None:
    quoted = "'" + spaced.replace("\\", "\\\\").replace("'", "\\'") + "'"
    for value in (plain, quoted):
        assert redact(f"host=db user=app password={value} dbname=hw") == (
            "host=db user=app password=*** dbname=hw")
        assert redact(f"host=db sslpassword = {value} dbname=hw") == (
            "host=db sslpassword = *** dbname=hw")


@given(ANY_LINE)
def test_kafka_sasl_passwords_in_config_dumps(password: str) -> None:
    config = {"bootstrap.servers": "k:9", "sasl.password": password, "ssl.key.pem": password,
              "sasl.username": "u"}
    assert re.fullmatch(r"\{'bootstrap.servers': 'k:9', 'sasl.password': (['\"])\*\*\*\1, "
                        r"'ssl.key.pem': (['\"])\*\*\*\2, 'sasl.username': 'u'\}",
                        redact(str(config)))
    assert json.loads(redact(json.dumps(config))) == {
        "bootstrap.servers": "k:9", "sasl.password": "***", "ssl.key.pem": "***",
        "sasl.username": "u"}


@given(NO_SPACE)
def test_properties_and_environment_lines(password: str) -> None:
    assert redact(f"sasl.password={password}\nHWLEDGER_KAFKA_OPT_SASL_PASSWORD={password}\n"
                  "sasl.username=u") == (
        "sasl.password=***\nHWLEDGER_KAFKA_OPT_SASL_PASSWORD=***\nsasl.username=u")


@pytest.mark.parametrize("text", [
    "postgresql://app@db/hw", "postgresql://db:5432/hw?sslmode=require",
    "host=db user=app dbname=hw", '{"key": "host", "value": "akash"}',
    "units[0].gpu_tokens: unknown token 'nvidia/x'", "sasl.username=u keytab=/etc/k"])
def test_text_without_passwords_is_unchanged(text: str) -> None:
    assert redact(text) == text


def test_log_lines_and_tracebacks_are_redacted() -> None:
    try:
        raise ValueError("postgresql://app:hunter2@db/hw")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "at %s", ("password=abc",),
                                   exc_info=sys.exc_info())
    line = RedactingFormatter("%(message)s").format(record)
    assert "hunter2" not in line and "abc" not in line and "password=***" in line


@pytest.mark.parametrize("url", ["postgresql://app:hun@ter2@db/hw",
                                 "postgresql://app:hun/ter2@db/hw",
                                 "postgresql://app@hun:ter2@db/hw"])
def test_unencoded_at_or_slash_in_the_userinfo_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(ConfigError, match=r"HWLEDGER_DATABASE_URL: .*percent-encode") as caught:
        Settings.from_env({"HWLEDGER_DATABASE_URL": url})
    assert "hun" not in str(caught.value) and "ter2" not in str(caught.value)
    with pytest.raises(ConfigError, match="HWLEDGER_QUERY_DATABASE_URL"):
        Settings.from_env({"HWLEDGER_QUERY_DATABASE_URL": url})


@pytest.mark.parametrize("url", ["postgresql://app:p%40ss@db/hw?application_name=a",
                                 "postgresql://app:pa:ss@db/hw", "host=db password=p@s/s",
                                 "postgresql://db/hw"])
def test_urls_libpq_reads_as_written_pass_the_check(url: str) -> None:
    assert check_database_url(url, "X") == url


def test_json_log_lines_are_redacted_objects() -> None:
    formatter = JsonRedactingFormatter()
    record = logging.LogRecord("hwledger.test", logging.WARNING, __file__, 1,
                               "cannot reach %s", ("postgresql://u:s3cret@db/x",), None)
    line = json.loads(formatter.format(record))
    assert line["level"] == "WARNING" and line["logger"] == "hwledger.test"
    assert line["message"] == "cannot reach postgresql://u:***@db/x"
    assert line["time"].endswith("+00:00")
