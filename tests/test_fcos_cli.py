"""`fcos`: the one command runs each module exactly as `python -m MODULE` does."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fcos.cli import COMMANDS, main


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name, (module, _) in COMMANDS.items():
        assert f"fcos {name}" in out and f"python -m {module}" in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_its_modules_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([name, "--help"]) == 0
    assert "usage:" in capsys.readouterr().out


def test_unknown_command_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["nope"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_python_m_fcos_runs_a_command() -> None:
    r = subprocess.run([sys.executable, "-m", "fcos", "serve", "--help"], capture_output=True,
                       text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0 and "DETECTOR_MODEL_PATH" in r.stdout
