"""``epix validate`` exit codes, human and JSON output; ``epix bench validate`` prints a ratio."""

from __future__ import annotations

import json
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
