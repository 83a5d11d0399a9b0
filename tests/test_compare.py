"""`persuasion compare` on real submission files: scores, gains and their range over articles."""

import json
from pathlib import Path

import pytest

from conftest import write_tiny_corpus
from persuasion.cli import main
from persuasion.corpus import read_articles


def write_submission(folder: Path, answers: dict[str, list[tuple[int, int, str]]]) -> Path:
    """SI, TC and FLC files for the train split, the TC file answering each gold occurrence by `answers`."""
    folder.mkdir()
    (folder / "train-task-si.txt").write_text("".join(f"{i}\t{s}\t{e}\n" for i, rows in answers.items()
                                                      for s, e, _ in rows))
    for task in ("tc", "flc"):
        (folder / f"train-task-{task}.txt").write_text("".join(f"{i}\t{t}\t{s}\t{e}\n" for i, rows in answers.items()
                                                               for s, e, t in rows))
    return folder


@pytest.fixture
def corpus(tmp_path) -> Path:
    return write_tiny_corpus(tmp_path / "ptc", articles=6)


def gold_answers(corpus: Path, wrong_from: int) -> dict:
    """The gold itself, except that the articles from `wrong_from` on name every span Doubt."""
    return {a.article_id: [(s.start, s.end, s.technique if n < wrong_from else "Doubt") for s in a.spans]
            for n, a in enumerate(read_articles(corpus, "train"))}


def test_a_system_right_on_more_articles_gains_in_every_draw_where_they_differ(corpus, tmp_path, capsys):
    first = write_submission(tmp_path / "first", gold_answers(corpus, wrong_from=0))
    second = write_submission(tmp_path / "second", gold_answers(corpus, wrong_from=3))
    out = tmp_path / "comparison.json"
    assert main(["compare", "--data", str(corpus), "--split", "train", str(first), str(second),
                 "--json", str(out)]) == 0
    comparison = json.loads(out.read_text())
    tc = comparison["measures"]["tc_micro_f1"]
    assert (tc["first"], tc["second"], tc["gain"]) == (0.0, 0.5, 0.5)  # 3 of 6 articles named right
    assert 0 < tc["gain_range"][0] < 0.5 < tc["gain_range"][1] <= 1.0
    # a draw of only the three articles both get wrong is a tie: (1/2)^6 of the draws
    assert tc["second_higher"] == pytest.approx(1 - 0.5 ** 6, abs=0.01)
    si = comparison["measures"]["si_f1"]
    assert (si["first"], si["second"], si["gain"], si["gain_range"]) == (1.0, 1.0, 0.0, [0.0, 0.0])
    shown = capsys.readouterr().out.splitlines()
    assert shown[0] == f"train (6 articles): second {second} against first {first}"
    assert shown[3].startswith("  TC micro-F1   0.0000  0.5000  +0.5000  +")
    # Written on Windows (BOM, CRLF, a blank line at the end), the same answers compare the same.
    for path in second.iterdir():
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n") + b"\r\n")
    assert main(["compare", "--data", str(corpus), "--split", "train", str(first), str(second),
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["measures"] == comparison["measures"]


@pytest.mark.parametrize("line, message", [
    ("1000\t5\n", "expected ID<TAB>start<TAB>end"),
    ("1000\tfive\t9\n", "start and end must be whole numbers"),
    ("1000\t9\t5\n", "9-5 is not a span"),
    ("999\t5\t9\n", "article 999 is not in this split"),
])
def test_a_malformed_submission_line_is_one_line_naming_its_file_and_line(corpus, tmp_path, capsys, line, message):
    first = write_submission(tmp_path / "first", gold_answers(corpus, wrong_from=0))
    second = write_submission(tmp_path / "second", gold_answers(corpus, wrong_from=0))
    with open(second / "train-task-si.txt", "a") as si_file:
        si_file.write(line)
    lines = len((second / "train-task-si.txt").read_text().splitlines())
    assert main(["compare", "--data", str(corpus), "--split", "train", str(first), str(second)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"train-task-si.txt:{lines}: {message}" in error


def test_a_binary_submission_file_is_one_line_too(corpus, tmp_path, capsys):
    first = write_submission(tmp_path / "first", gold_answers(corpus, wrong_from=0))
    second = write_submission(tmp_path / "second", gold_answers(corpus, wrong_from=0))
    (second / "train-task-flc.txt").write_bytes(b"\x7fELF\x02\x01\x01\x00\xd0\xff\x00")
    assert main(["compare", "--data", str(corpus), "--split", "train", str(first), str(second)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "train-task-flc.txt: not valid UTF-8" in error


def test_an_unknown_technique_or_a_missing_file_stops_the_comparison(corpus, tmp_path, capsys):
    first = write_submission(tmp_path / "first", gold_answers(corpus, wrong_from=0))
    second = write_submission(tmp_path / "second", gold_answers(corpus, wrong_from=0))
    (second / "train-task-tc.txt").write_text("1000\tLoaded_language\t5\t9\n")
    assert main(["compare", "--data", str(corpus), "--split", "train", str(first), str(second)]) == 2
    assert "train-task-tc.txt:1: unknown technique 'Loaded_language'" in capsys.readouterr().err
    (first / "train-task-flc.txt").unlink()
    assert main(["compare", "--data", str(corpus), "--split", "train", str(first), str(second)]) == 2
    assert "train-task-flc.txt: no such file" in capsys.readouterr().err
