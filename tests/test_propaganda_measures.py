"""The official measures as an `evaluate` metric: loaded offline from the package, hand-computed cases, and the
shipped model's dev predictions scored to its recorded metrics.json."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

evaluate = pytest.importorskip("evaluate", reason="the [train] extra is not installed")

from persuasion.eval import propaganda_measures  # noqa: E402

SHIPPED_METRICS = Path(__file__).resolve().parents[1] / "model" / "shipped" / "fast" / "metrics.json"


def spans(*pairs) -> list[dict]:
    return [{"start": start, "end": end} for start, end in pairs]


def labelled(*triples) -> list[dict]:
    return [{"start": start, "end": end, "technique": technique} for start, end, technique in triples]


@pytest.fixture
def measures(monkeypatch):
    """evaluate.load on the shipped module file, with every network connection refused and recorded."""
    attempts = []

    def refuse(self, address):
        attempts.append(address)
        raise OSError(f"no network in this test (tried {address})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    module = evaluate.load(str(propaganda_measures.PATH), keep_in_memory=True)
    yield module
    assert attempts == [], "evaluate.load or compute reached for the network"


def test_hand_computed_scores(measures):
    predictions = [
        {"article_id": "1", "si": spans((0, 5)), "tc": labelled((0, 10, "Doubt"), (20, 30, "Slogans")),
         "flc": labelled((0, 5, "Doubt"))},
        {"article_id": "2", "si": spans((0, 4)), "tc": [], "flc": []},
    ]
    references = [
        {"article_id": "1", "si": spans((0, 10)), "techniques": labelled((0, 10, "Doubt"), (20, 30, "Repetition")),
         "has_techniques": True},
        {"article_id": "2", "si": spans((2, 6)), "techniques": [], "has_techniques": False},  # SI gold only
    ]
    scores = measures.compute(predictions=predictions, references=references)
    # SI: P = (5/5 + 2/4) / 2, R = (5/10 + 2/4) / 2 over the two articles
    assert scores["si"]["precision"] == pytest.approx(0.75) and scores["si"]["recall"] == pytest.approx(0.5)
    assert scores["si"]["f1"] == pytest.approx(0.6)
    # TC: one of the two gold occurrences of article 1 (article 2 has no techniques)
    assert scores["tc"]["micro_f1"] == pytest.approx(0.5) and scores["tc"]["gold_spans"] == 2
    # FLC: Doubt 0-5 against Doubt 0-10 is P 1, R 5/10 / 2 gold spans
    assert scores["flc"]["precision"] == pytest.approx(1.0) and scores["flc"]["recall"] == pytest.approx(0.25)


def test_without_technique_gold_only_si_is_scored(measures):
    scores = measures.compute(predictions=[{"article_id": "1", "si": spans((0, 5)), "tc": [], "flc": []}],
                              references=[{"article_id": "1", "si": spans((0, 5)), "techniques": [],
                                           "has_techniques": False}])
    assert set(scores) == {"si"} and scores["si"]["f1"] == 1.0


def test_predictions_out_of_order_are_an_error(measures):
    predictions = [{"article_id": i, "si": [], "tc": [], "flc": []} for i in ("1", "2")]
    references = [{"article_id": i, "si": [], "techniques": [], "has_techniques": True} for i in ("2", "1")]
    with pytest.raises(ValueError, match="prediction 0 is for article '1' but reference 0 is for '2'"):
        measures.compute(predictions=predictions, references=references)


def read_submission(path: Path, columns: int) -> dict[str, list[dict]]:
    """An official submission file as metric records per article: SI `ID start end`, TC/FLC `ID technique start end`."""
    by_article: dict[str, list[dict]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        assert len(fields) == columns
        if columns == 3:
            record = {"start": int(fields[1]), "end": int(fields[2])}
        else:
            record = {"start": int(fields[2]), "end": int(fields[3]), "technique": fields[1]}
        by_article.setdefault(fields[0], []).append(record)
    return by_article


def numbers(tree, path: str = ""):
    """(path, number) for every number in a nested dict, so two results compare leaf by leaf."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from numbers(value, f"{path}/{key}")
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield path, tree


@pytest.mark.slow
def test_the_metric_scores_the_dev_predictions_as_metrics_json_records(ptc_dir, tmp_path, measures):
    from persuasion.corpus import Article, load_corpus, span_gold, technique_gold
    from persuasion.eval.benchmark import run_benchmark

    recorded = json.loads(SHIPPED_METRICS.read_text())  # in the precision it records, as on any machine
    benchmark = run_benchmark(ptc_dir, "dev", tmp_path, "fast", progress=False, precision=recorded["precision"])
    articles = [Article.from_record(record) for record in load_corpus(ptc_dir, ["dev"])["dev"]]
    si = read_submission(tmp_path / "dev-task-si.txt", 3)
    tc = read_submission(tmp_path / "dev-task-tc.txt", 4)
    flc = read_submission(tmp_path / "dev-task-flc.txt", 4)
    si_gold, gold = span_gold(articles), technique_gold(articles)
    scores = measures.compute(
        predictions=[{"article_id": i, "si": si.get(i, []), "tc": tc.get(i, []), "flc": flc.get(i, [])}
                     for i in si_gold],
        references=[{"article_id": i, "si": propaganda_measures.span_records(si_gold[i]),
                     "techniques": propaganda_measures.span_records(gold.get(i, [])), "has_techniques": i in gold}
                    for i in si_gold])

    for task in ("si", "tc", "flc"):
        measured, wanted = dict(numbers(scores[task])), dict(numbers(recorded[task]))
        assert measured.keys() == wanted.keys(), task
        worst = max(abs(measured[key] - wanted[key]) for key in wanted)
        assert worst <= 1e-9, (task, worst)
        assert dict(numbers(benchmark[task])) == measured, f"the benchmark's {task} is the metric's"


def test_readme_example_prints_what_its_comment_says(measures, capsys):
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    code = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "evaluate.load" in block)
    exec(compile(code, "README.md", "exec"), {})
    assert capsys.readouterr().out.strip() == code.rstrip().rsplit("# ", 1)[1]
