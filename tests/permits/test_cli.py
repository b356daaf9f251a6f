"""``epix validate`` exit codes, human and JSON output; ``epix bench validate`` prints a ratio."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from epix.cli.main import cli
from epix.permits.writer import write_permit
from tests.permits.helpers import SAMPLE, base, change


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_valid_files_exit_zero_with_warnings_shown(tmp_path: Path) -> None:
    good = write(tmp_path, "good.xml", write_permit(base()))
    result = CliRunner().invoke(cli, ["validate", str(good), str(SAMPLE)])
    assert result.exit_code == 0, result.output
    assert f"{good}: valid" in result.output
    assert "warning EPIX-CODE-101" in result.output
    assert f"{SAMPLE}:" in result.output and "IncludedSupplyChainConsignmentItem" in result.output


def test_any_invalid_file_exits_one_and_names_file_code_and_line(tmp_path: Path) -> None:
    good = write(tmp_path, "good.xml", write_permit(base()))
    bad = write(tmp_path, "bad.xml", write_permit(change(base(), purpose="K")))
    result = CliRunner().invoke(cli, ["validate", str(good), str(bad)])
    assert result.exit_code == 1
    assert f"{bad}: INVALID" in result.output
    assert "error EPIX-CODE-002" in result.output
    assert "/CITESEPermit/HeaderExchangedDocument/PurposeCode" in result.output


def test_json_output_has_the_contract_shape(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.xml", b"<!DOCTYPE x><x/>")
    result = CliRunner().invoke(cli, ["validate", "--json", str(SAMPLE), str(bad)])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert [entry["file"] for entry in report] == [str(SAMPLE), str(bad)]
    assert [entry["valid"] for entry in report] == [True, False]
    for entry in report:
        assert set(entry) == {"file", "valid", "errors"}
        for error in entry["errors"]:
            assert {"code", "severity", "message", "location"} <= set(error)
            assert error["severity"] in ("error", "warning")
    assert report[1]["errors"][0]["code"] == "EPIX-XML-002"


def test_usage_errors_exit_two(tmp_path: Path) -> None:
    assert CliRunner().invoke(cli, ["validate"]).exit_code == 2
    assert CliRunner().invoke(cli, ["validate", str(tmp_path / "missing.xml")]).exit_code == 2
    assert CliRunner().invoke(cli, ["validate", "--bogus", str(SAMPLE)]).exit_code == 2


def test_bench_validate_prints_rates_and_ratio() -> None:
    result = CliRunner().invoke(cli, ["bench", "validate", "--seconds", "0.3"])
    assert result.exit_code == 0, result.output
    assert "permits/s" in result.output
    ratio = float(result.output.split("ratio: ")[1].split()[0])
    assert ratio > 0


def test_bench_validate_signed_measures_a_signed_permit() -> None:
    result = CliRunner().invoke(
        cli, ["bench", "validate", "--seconds", "0.3", "--lines", "2", "--signed"]
    )
    assert result.exit_code == 0, result.output
    assert "2 lines, signed" in result.output
    assert float(result.output.split("ratio: ")[1].split()[0]) > 0


_BOUNDED_CLI = (
    "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
    "from epix.cli.main import cli; sys.argv[0] = 'epix'; cli()"
)


def _validate_in_a_bounded_process(*args: str) -> subprocess.CompletedProcess[str]:
    """``epix validate`` as its own process with 1 GiB of address space, so a command that
    loads a whole endless file fails there (MemoryError) instead of filling the machine."""
    return subprocess.run(
        [sys.executable, "-c", _BOUNDED_CLI, "validate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_an_endless_or_oversized_file_is_refused_without_being_loaded(tmp_path: Path) -> None:
    """``/dev/zero`` passed click's checks and was read whole: a MemoryError and a traceback
    (or the machine's memory); a 3 GiB file was loaded before being refused as too large."""
    huge = tmp_path / "huge.xml"
    with huge.open("wb") as file:
        file.truncate(3 << 30)  # sparse: no disk used
    result = _validate_in_a_bounded_process("--json", "/dev/zero", str(huge), str(SAMPLE))
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    assert [entry["valid"] for entry in report] == [False, False, True]
    for entry in report[:2]:
        assert [error["code"] for error in entry["errors"]] == ["EPIX-XML-004"]


def test_a_dash_reads_the_document_from_standard_input(tmp_path: Path) -> None:
    good = write_permit(base())
    result = CliRunner().invoke(cli, ["validate", "--json", "-"], input=good)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["file"] == "-"
    result = CliRunner().invoke(cli, ["validate", "-", str(SAMPLE)], input=b"<not-xml")
    assert result.exit_code == 1
    assert "-: INVALID" in result.output and "EPIX-XML-001" in result.output
    assert f"{SAMPLE}: valid" in result.output
