"""The command line a new user meets: errors show the mistyped command's usage and name the flag; help says what a
command does; `local up` names a file to drop in that exists."""

from __future__ import annotations

import shlex
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from dropzone.cli import main
from dropzone.commands.local import _sample_orders, _welcome
from dropzone.local import server
from tests.unit.closed_pipe import to_a_closed_pipe

ROOT = Path(__file__).resolve().parents[2]
# what `local up` writes to .dropzone/local.json, as its welcome reads it
STATE = {
    "endpoint_url": "http://127.0.0.1:4566",
    "region": "us-east-1",
    "data_bucket": "bucket",
    "ledger_table": "ledger",
    "stack_name": "dropzone-local",
}


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """What argparse prints when it refuses ``argv`` (exit 2)."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "command", "unknown"),
    [
        (["validate", "--contract", "contracts/orders.yaml", "--jsn", "x.csv"], "validate", "--jsn"),
        (["generate", "--rows", "10", "--out", "data", "--sed", "3"], "generate", "--sed 3"),
        (["status", "--jsn"], "status", "--jsn"),
        (["demo", "--rws", "10"], "demo", "--rws 10"),
        (["local", "run", "--spark-per-runs"], "local run", "--spark-per-runs"),
        (["local", "up", "--prot", "4566"], "local up", "--prot 4566"),
    ],
)
def test_an_unknown_flag_shows_the_usage_of_its_command(
    argv: list[str], command: str, unknown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _usage_error(argv, capsys)
    assert err.startswith(f"usage: dropzone {command} [-h]")
    assert err.endswith(f"dropzone {command}: error: unrecognized arguments: {unknown}\n")


def test_a_bad_end_date_names_the_flag_and_the_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _usage_error(["generate", "--rows", "10", "--out", str(tmp_path), "--end-date", "2026-13-01"], capsys)
    assert "dropzone generate: error: argument --end-date: '2026-13-01' is not a date (YYYY-MM-DD)" in err
    assert not (tmp_path / "orders").exists()


def test_generating_into_a_file_names_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    taken = tmp_path / "data"
    taken.write_text("not a folder")
    assert main(["generate", "--rows", "10", "--out", str(taken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dropzone generate: error: --out {taken}: cannot write there: Not a directory")
    assert taken.read_text() == "not a folder"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["generate", "--rows", "10", "--seed", "-1"], "--seed must be at least 0, got -1"),
        (["generate", "--rows", "10", "--files", "0"], "--files must be at least 1, got 0"),
        (["local", "run", "--seed", "-1"], "--seed must be at least 0, got -1"),
        (["local", "up", "--port", "70000"], "--port must be between 0 and 65535, got 70000"),
        (["local", "up", "--poll", "0"], "--poll and --reconcile-every must be more than 0 seconds"),
        (["local", "up", "--reconcile-every", "-5"], "--poll and --reconcile-every must be more than 0 seconds"),
    ],
)
def test_a_bad_number_is_refused_naming_its_flag(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = ["--root", str(tmp_path)] if argv[0] == "local" else []  # no template.yaml: nothing could start
    out = ["--out", str(tmp_path / "out")]
    assert main([*argv, *root, *out]) == 2
    assert message in capsys.readouterr().err  # the flag is checked first
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["demo"], "What `make demo` runs: the whole pipeline locally, as `dropzone local run`"),
        (["local", "run"], "Deploy template.yaml into an embedded AWS API, upload the files of --data DIR"),
        (["local", "up"], "Deploy template.yaml into an embedded AWS API on 127.0.0.1 and keep it running"),
    ],
)
def test_help_describes_the_command(argv: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal's width
    assert words in help_text


def test_spark_per_run_help_says_what_it_does_now(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["local", "run", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "as before" not in help_text
    assert "give every EMR job run its own spark-submit (a new JVM)" in help_text


def test_local_up_names_a_file_that_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the sample `local up` generates in its working directory
    monkeypatch.chdir(tmp_path)
    sample = _sample_orders(tmp_path / "up" / "sample")
    # WHEN the welcome is written
    welcome = _welcome(STATE, tmp_path / ".dropzone" / "local.json", sample, ["customers", "orders", "products"])
    # THEN the AWS CLI and boto3 lines name that file, which exists and holds orders
    (cp,) = [line for line in welcome.splitlines() if "aws s3 cp" in line]
    (upload,) = [line for line in welcome.splitlines() if "upload_file(" in line]
    file = shlex.split(cp)[3]
    assert file == "up/sample/orders/orders-001.csv"
    assert f"upload_file('{file}'" in upload
    assert (tmp_path / file).read_text().startswith('"order_id","customer_id","order_ts"')


def test_local_up_with_your_own_contracts_names_their_datasets_not_a_generated_orders_file(tmp_path: Path) -> None:
    welcome = _welcome(STATE, tmp_path / "local.json", None, ["pages", "sessions"])
    assert "  datasets: pages, sessions" in welcome.splitlines()
    assert "sample" not in welcome
    (cp,) = [line for line in welcome.splitlines() if "aws s3 cp" in line]
    assert cp.strip() == "aws s3 cp <your file> s3://bucket/incoming/pages/"


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        (lambda d: None, ["--data", "."], "--contracts {d}: not a folder"),
        (lambda d: d.mkdir(), ["--data", "."], "--contracts {d}: no *.yaml contracts in it"),
        (
            lambda d: (d.mkdir(), (d / "pings.yaml").write_text("dataset: pings\ncolumns: {}\n")),
            ["--data", "."],
            "pings.yaml: ",
        ),
        (
            lambda d: (d.mkdir(), (d / "products.yaml").write_text((ROOT / "contracts" / "products.yaml").read_text())),
            [],
            "--contracts {d} needs --data: generated data fits only the shipped orders contracts",
        ),
    ],
)
def test_local_run_refuses_a_contracts_folder_it_cannot_use_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Any, extra: list[str], message: str
) -> None:
    folder = tmp_path / "mine"
    make(folder)
    out = tmp_path / "out"
    code = main(["local", "run", "--root", str(ROOT), "--contracts", str(folder), "--out", str(out), *extra])
    assert code == 2
    assert message.format(d=folder) in capsys.readouterr().err
    assert not out.exists()


def test_local_up_on_a_port_another_program_listens_on_exits_naming_the_port(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "dropzone.cli", "local", "up", "--port", str(port), "--root", str(ROOT)]
        result = subprocess.run(  # it hung for ever once: the timeout fails the test instead of hanging it
            [*command, "--out", str(tmp_path / "up")], capture_output=True, text=True, timeout=120, check=False
        )
    assert result.returncode == 2
    assert result.stderr == (
        f"dropzone local up: error: --port {port}: 127.0.0.1:{port} is in use by another program; stop it or "
        "choose another port (0: a free one)\n"
    )
    assert not (tmp_path / "up").exists()  # refused before anything is written


def test_the_embedded_api_does_not_wait_for_a_server_that_could_not_listen(monkeypatch: pytest.MonkeyPatch) -> None:
    """The port taken between the check and the start: moto's server thread ends, the start returns an error."""
    monkeypatch.setattr(server, "check_port", lambda port: None)
    outcome: list[str] = []

    def start(port: int) -> None:
        try:
            server.EmbeddedAws(port).stop()
            outcome.append("started")
        except server.PortUnavailable as e:
            outcome.append(str(e))

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        thread = threading.Thread(target=start, args=(port,), daemon=True)
        thread.start()
        thread.join(60)
    assert outcome == [f"the embedded AWS API cannot listen on 127.0.0.1:{port}"]


def test_generate_to_a_reader_that_stops_early_ends_the_output_quietly(tmp_path: Path) -> None:
    """No BrokenPipeError traceback; the files are written all the same."""
    result = to_a_closed_pipe(["generate", "--rows", "3", "--files", "10", "--out", str(tmp_path / "g2")])
    assert (result.returncode, result.stderr) == (0, "")
    assert list((tmp_path / "g2" / "orders").glob("*.csv"))  # 3 rows: 3 files
    assert (tmp_path / "g2" / "products" / "products.csv").is_file()


def test_validate_to_a_reader_that_stops_early_ends_the_output_quietly(tmp_path: Path) -> None:
    """On a file missing columns: no traceback, and the exit code still says the file was quarantined."""
    bad = tmp_path / "orders.csv"
    bad.write_text("order_id,customer_id\nnot-an-id,C000001\n")
    contract = Path(__file__).resolve().parents[2] / "contracts" / "orders.yaml"
    result = to_a_closed_pipe(["validate", "--contract", str(contract), str(bad)])
    assert (result.returncode, result.stderr) == (1, "")
