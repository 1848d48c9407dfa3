from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from roost import __version__
from roost.cli import app
from roost.store import Store

runner = CliRunner()


def test_version_and_help() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"roost {__version__}"
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "pull" in result.output and "models" in result.output


def test_pull_list_show_rm(tiny_model_dir: Path) -> None:
    result = runner.invoke(app, ["pull", str(tiny_model_dir), "--name", "tiny"])
    assert result.exit_code == 0, result.output
    assert "tiny ready at" in result.output

    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0 and "tiny" in result.output and "base" in result.output

    result = runner.invoke(app, ["models", "show", "tiny"])
    assert result.exit_code == 0 and '"kind": "base"' in result.output

    result = runner.invoke(app, ["models", "rm", "tiny"])
    assert result.exit_code == 0 and "removed base 'tiny'" in result.output
    result = runner.invoke(app, ["models", "show", "tiny"])
    assert result.exit_code == 1 and "no model or adapter named 'tiny'" in result.output


def test_bad_pulls_exit_nonzero_with_one_line_and_write_nothing(tiny_model_dir: Path, roost_home: Path) -> None:
    for args in (["pull", "../x"], ["pull", "--name", "../x", str(tiny_model_dir)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert Store(roost_home).list() == []


def test_unknown_key_in_roost_toml_is_one_line_error(tiny_model_dir: Path, roost_home: Path) -> None:
    Path("roost.toml").write_text("[backend]\nprot = 1\n")
    result = runner.invoke(app, ["pull", str(tiny_model_dir)])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"error: {Path.cwd() / 'roost.toml'}: unknown key 'backend.prot'; allowed here: "
        "host, port, url, api_key" + _extra_backend_keys()
    )
    assert not roost_home.exists()


def _extra_backend_keys() -> str:
    from roost.config import BackendSettings

    names = [n for n in BackendSettings.model_fields if n not in ("host", "port", "url", "api_key")]
    return "".join(f", {n}" for n in names)


def test_empty_store_listing() -> None:
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0 and "empty" in result.output


def test_import_roost_stays_light() -> None:
    code = (
        "import sys, roost, roost.cli, roost.config, roost.store, roost.models\n"
        "heavy = [m for m in ('torch', 'transformers', 'dspy', 'crewai', 'autogen_agentchat', 'langgraph')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
