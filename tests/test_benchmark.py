"""`persuasion benchmark` end to end: real files in, official submission files and metrics out."""

import json
from pathlib import Path

import pytest

from persuasion.cli import main

ARTICLE = ("Title: The corrupt elite strikes again\n\n"
           "The corrupt elite lied to you again.\r\n"
           "Officials met on Tuesday to discuss the budget.\n"
           "Wake up, America! Wake up before it is too late.\n")


def write_corpus(root: Path, split: str, gold: bool) -> Path:
    (root / f"{split}-articles").mkdir(parents=True)
    labels = []
    for article_id in ("11", "12"):
        (root / f"{split}-articles" / f"article{article_id}.txt").write_text(ARTICLE, encoding="utf-8", newline="")
        elite = ARTICLE.index("corrupt elite lied")
        wake = ARTICLE.index("Wake up, America!")
        labels.append((article_id, [("Name_Calling,Labeling", elite, elite + 13), ("Loaded_Language", elite, elite + 13),
                                    ("Slogans", wake, wake + 17)]))
    if gold:
        (root / f"{split}-labels-task-flc-tc").mkdir()
        for article_id, rows in labels:
            lines = "".join(f"{article_id}\t{t}\t{s}\t{e}\n" for t, s, e in rows)
            (root / f"{split}-labels-task-flc-tc" / f"article{article_id}.task-flc-tc.labels").write_text(lines)
    else:
        template = "".join(f"{article_id}\t?\t{s}\t{e}\n" for article_id, rows in labels for _, s, e in rows)
        (root / f"{split}-task-tc-template.out").write_text(template)
    return root


def read_rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()]


def test_majority_baseline_on_a_synthetic_split(tmp_path, capsys):
    data = write_corpus(tmp_path / "ptc", "train", gold=True)
    write_corpus(data, "dev", gold=True)
    out = tmp_path / "out"
    assert main(["benchmark", "--data", str(data), "--split", "dev", "--out", str(out), "--system", "majority",
                 "--quiet"]) == 0
    tc_rows = read_rows(out / "dev-task-tc.txt")
    assert len(tc_rows) == 6  # one line per gold occurrence, the duplicated fragment twice
    assert {row[1] for row in tc_rows} == {"Loaded_Language"}  # ties break by name; one class for all
    assert (out / "dev-task-si.txt").read_text() == ""  # majority finds no spans
    metrics = json.loads((out / "metrics.json").read_text())
    # 2 of the 6 occurrences are Loaded_Language
    assert metrics["tc"]["micro_f1"] == pytest.approx(2 / 6)
    assert metrics["si"]["f1"] == 0.0 and metrics["si"]["gold_spans"] == 4
    assert (out / "technique_table.md").read_text().startswith("| technique |")
    assert (out / "technique_f1.png").stat().st_size > 0 and (out / "tc_confusion.png").stat().st_size > 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[0] == f"majority on dev (2 articles, {metrics['seconds']} s):"
    low, high = metrics["intervals"]["tc_micro_f1"]
    assert low <= round(2 / 6, 4) <= high and metrics["intervals"]["articles"] == 2  # bounds have 4 decimals
    assert shown[4] == (f"  TC micro-F1   0.3333  {low:.3f}-{high:.3f}  technique classification of each gold span, "
                        "over all of them")
    assert [line.split("  ")[1] for line in shown[1:-2]] == ["SI precision", "SI recall", "SI F1", "TC micro-F1",
                                                             "TC macro-F1", "FLC F1"]  # each measure named
    assert shown[-2] == ("  (ranges: 95% of the scores when the 2 articles are drawn again with replacement, "
                         "10000 times)")
    assert shown[-1] == f"wrote {out / 'metrics.json'}"


def test_the_confusion_plot_says_its_cells_are_counts():
    from persuasion.eval.report import confusion_figure

    per_technique = {name: {"gold": gold, "f1": 0.5} for name, gold in [("Doubt", 4), ("Slogans", 2)]}
    metrics = {"tc": {"per_technique": per_technique, "confusion": {"Doubt\tDoubt": 3, "Doubt\tSlogans": 1,
                                                                   "Slogans\tSlogans": 2}}}
    figure = confusion_figure(metrics)
    axes, colour_bar = figure.axes
    assert "count" in axes.get_title() and "share" not in axes.get_title()
    assert sorted(text.get_text() for text in axes.texts) == ["1", "2", "3"]  # counts, not shares
    assert "share of the gold row" in colour_bar.get_ylabel()


def test_checkpoint_system_writes_well_formed_submissions(tmp_path, tiny_checkpoint):
    data = write_corpus(tmp_path / "ptc", "dev", gold=True)
    out = tmp_path / "out"
    assert main(["benchmark", "--data", str(data), "--split", "dev", "--out", str(out), "--system",
                 str(tiny_checkpoint), "--quiet"]) == 0
    for article_id, technique, start, end in read_rows(out / "dev-task-flc.txt"):
        assert article_id in {"11", "12"} and 0 <= int(start) < int(end) <= len(ARTICLE)
    tc_rows = read_rows(out / "dev-task-tc.txt")
    assert [(r[0], r[2], r[3]) for r in tc_rows][:3] == [
        ("11", str(ARTICLE.index("corrupt elite lied")), str(ARTICLE.index("corrupt elite lied") + 13))] * 2 + [
        ("11", str(ARTICLE.index("Wake up")), str(ARTICLE.index("Wake up") + 17))]
    duplicate = tc_rows[:2]
    assert duplicate[0][1] != duplicate[1][1], "a fragment listed twice gets two different techniques"
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["calibration"]) >= {"tc_ece", "span_ece", "span_reliability", "sentence_ece",
                                            "sentence_reliability"}
    assert sum(row["count"] for row in metrics["calibration"]["span_reliability"]) == metrics["calibration"]["spans"]
    assert metrics["calibration"]["spans"] == len(read_rows(out / "dev-task-flc.txt"))


def test_blind_split_writes_only_predictions(tmp_path, tiny_checkpoint, capsys):
    data = write_corpus(tmp_path / "ptc", "test", gold=False)
    out = tmp_path / "out"
    assert main(["benchmark", "--data", str(data), "--split", "test", "--out", str(out), "--system",
                 str(tiny_checkpoint), "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["test-task-flc.txt", "test-task-si.txt", "test-task-tc.txt"]
    assert len(read_rows(out / "test-task-tc.txt")) == 6
    assert "no gold labels" in capsys.readouterr().out


def test_unknown_system_and_missing_split_are_one_line_errors(tmp_path, capsys):
    data = write_corpus(tmp_path / "ptc", "dev", gold=True)
    assert main(["benchmark", "--data", str(data), "--split", "dev", "--out", str(tmp_path / "o"),
                 "--system", "no-such-model"]) == 2
    assert main(["benchmark", "--data", str(data), "--split", "test", "--out", str(tmp_path / "o")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "no-such-model" in errors[0] and "test-articles" in errors[1]


@pytest.mark.slow
def test_tfidf_baseline_beats_majority_on_dev(ptc_dir, tmp_path):
    from persuasion.eval.benchmark import run_benchmark

    majority = run_benchmark(ptc_dir, "dev", tmp_path / "majority", "majority", progress=False)
    tfidf = run_benchmark(ptc_dir, "dev", tmp_path / "tfidf", "tfidf", progress=False)
    assert tfidf["tc"]["micro_f1"] > majority["tc"]["micro_f1"]
    assert tfidf["tc"]["macro_f1"] > majority["tc"]["macro_f1"]
    assert tfidf["si"]["f1"] > majority["si"]["f1"]
