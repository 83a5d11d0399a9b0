"""The installed `persuasion` command and package: version, exit statuses, the [train] extra, imports from anywhere."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import persuasion
from persuasion.cli import main
from persuasion.errors import EXIT_STATUS_MEANINGS
from persuasion.extras import TRAINING_MODULES

ROOT = Path(__file__).resolve().parents[1]
COMMAND = Path(sys.executable).parent / "persuasion"  # the console script pip installed beside this Python


def test_version_is_the_packages_version():
    result = subprocess.run([COMMAND, "--version"], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"persuasion {persuasion.__version__}\n"
    assert importlib.metadata.version("persuasion") == persuasion.__version__


@pytest.mark.parametrize("arguments", [["--help"], ["detect", "--help"]])
def test_help_and_readme_give_every_exit_status(capsys, arguments):
    with pytest.raises(SystemExit) as exited:
        main(arguments)
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for status, meaning in EXIT_STATUS_MEANINGS.items():
        assert re.search(rf"^  {status.value} +{re.escape(meaning)}$", shown, re.M), status
        assert f"| {status.value} | {meaning} |" in readme, status


def test_training_modules_are_the_train_extra():
    requirements = importlib.metadata.requires("persuasion")
    extra = [requirement for requirement in requirements if 'extra == "train"' in requirement]
    distributions = {re.split(r"[<>=~ ;]", requirement)[0] for requirement in extra}
    assert set(TRAINING_MODULES.values()) == distributions


def without_modules(tmp_path: Path, *modules: str) -> dict:
    """An environment in which Python cannot import `modules`, as after `pip install -e .` alone."""
    (tmp_path / "hide").mkdir()
    (tmp_path / "hide" / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{module!r}] = None\n" for module in modules))
    return dict(os.environ, PYTHONPATH=str(tmp_path / "hide"))


@pytest.mark.parametrize("hidden, arguments", [
    ("matplotlib", ["benchmark", "--data", "{data}", "--split", "train", "--out", "{out}", "--system", "majority"]),
    ("sklearn", ["benchmark", "--data", "{data}", "--split", "train", "--out", "{out}", "--system", "tfidf"]),
    ("accelerate", ["train", "--config", str(ROOT / "configs" / "minilm-cpu.yaml"), "--data", "{data}",
                    "--output", "{out}"]),
    ("datasets", ["tune", "{out}", "--data", "{data}"]),
])
def test_without_the_train_extra_a_command_stops_at_once_naming_the_install(tmp_path, hidden, arguments):
    from conftest import write_tiny_corpus

    data, out = write_tiny_corpus(tmp_path / "data"), tmp_path / "out"
    arguments = [argument.format(data=data, out=out) for argument in arguments]

    result = subprocess.run([COMMAND, *arguments], env=without_modules(tmp_path, hidden), capture_output=True,
                            text=True, timeout=300)

    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert hidden in result.stderr and 'pip install -e ".[train]"' in result.stderr
    assert not out.exists(), "it did work before stopping"


def test_the_package_imports_from_the_folder_holding_the_clone(tmp_path):
    """`python` run beside a clone folder named persuasion/ must import the package, not that folder."""
    (tmp_path / "persuasion").symlink_to(ROOT, target_is_directory=True)
    check = ("from persuasion import Detector, Span; import persuasion.model.detector as detector, persuasion.cli; "
             "import os; print(detector.Detector is Detector, os.path.realpath(persuasion.cli.__file__))")

    result = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", str(ROOT / "persuasion" / "cli.py")]
