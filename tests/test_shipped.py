"""The shipped model: loads with no argument, finds well-formed spans, and still earns its recorded metrics."""

import json

import pytest

from conftest import assert_shows_the_same_output
from persuasion.model.checkpoint import shipped_folders
from persuasion.taxonomy import TECHNIQUES

pytestmark = pytest.mark.slow


# The official SemEval-2020 SI scorer (aschern/semeval2020_task11, tools/task-SI_scorer.py, run outside this
# repository: it is GPL) on the benchmark's dev-task-si.txt for the shipped model, against the dev task-si
# gold files concatenated into one file:
#   python3 task-SI_scorer.py -s dev-task-si.txt -r dev-task-si-gold.txt -m
#   Precision=477.034999/1435=0.332429  Recall=539.389099/940=0.573818
#   F1=0.420975
OFFICIAL_DEV_SI = {"precision_credit": 477.034999, "predicted_spans": 1435, "recall_credit": 539.389099,
                   "gold_spans": 940, "f1": 0.420975}


@pytest.fixture(scope="module")
def dev_runs(ptc_dir, tmp_path_factory):
    """The benchmark of each shipped model on dev, by name: (the folder it wrote, its metrics), in the precision
    its metrics were recorded in (fp32 before precision was recorded), run once for the tests that read it."""
    from persuasion.eval.benchmark import run_benchmark

    runs = {}
    for name, folder in shipped_folders().items():
        out = tmp_path_factory.mktemp(f"dev-{name}")
        runs[name] = out, run_benchmark(ptc_dir, "dev", out, name, progress=False, precision=json.loads(
            (folder / "metrics.json").read_text()).get("precision", "fp32"))
    return runs


@pytest.fixture(scope="module")
def dev_metrics(dev_runs):
    return {name: metrics for name, (_, metrics) in dev_runs.items()}


@pytest.fixture(scope="module")
def shipped():
    from persuasion import Detector

    return Detector.load(device="cpu")


def test_shipped_model_finds_well_formed_spans_in_a_dev_article(shipped, ptc_dir):
    from persuasion.corpus import read_ptc_articles

    articles = {a.article_id: a for a in read_ptc_articles(ptc_dir, "dev")}
    article = max(articles.values(), key=lambda a: len(a.spans))  # plenty for the model to find
    result = shipped.detect(article.text)
    assert len(result.spans) >= 5
    for span in result.spans:
        assert 0 <= span.start < span.end <= len(article.text)
        assert article.text[span.start:span.end] == span.text and span.text.strip()
        assert span.technique in TECHNIQUES and 0.0 < span.score <= 1.0
    assert result.spans == sorted(result.spans, key=lambda s: (s.start, s.end, -s.score))
    # a good share of the found fragments overlap a gold span (dev SI precision is about a third)
    gold = [(s.start, s.end) for s in article.spans]
    hits = sum(any(s.start < e and b < s.end for b, e in gold) for s in result.spans)
    assert hits >= len(result.spans) / 3


def test_trivial_inputs_get_no_span_without_a_word_and_no_repetition_of_what_occurs_once(shipped):
    assert shipped.detect("!").spans == []
    for text in ("the", "Wake up"):
        result = shipped.detect(text)
        assert all(span.technique != "Repetition" and 0.0 < span.score < 0.5 for span in result.spans), result.spans
    repeated = shipped.detect("Stop the steal. Stop the steal.").spans
    assert all(span.technique == "Repetition" for span in repeated if span.text == "Stop the steal")


@pytest.mark.parametrize("name", sorted(shipped_folders()))
def test_shipped_model_still_earns_its_recorded_dev_metrics(dev_metrics, name):
    recorded = json.loads((shipped_folders()[name] / "metrics.json").read_text())
    for task, key in [("si", "precision"), ("si", "recall"), ("si", "f1"), ("tc", "micro_f1"), ("tc", "macro_f1"),
                      ("flc", "f1")]:
        assert dev_metrics[name][task][key] == pytest.approx(recorded[task][key], abs=1e-4), (task, key)
    for key, bounds in recorded["intervals"].items():  # the ranges the model card prints
        assert dev_metrics[name]["intervals"][key] == pytest.approx(bounds, abs=1e-4), key


def test_shipped_dev_si_is_the_official_scorers(dev_metrics):
    si, official = dev_metrics["fast"]["si"], OFFICIAL_DEV_SI
    assert (si["predicted_spans"], si["gold_spans"]) == (official["predicted_spans"], official["gold_spans"])
    # the official scorer prints six decimals
    assert si["precision"] * si["predicted_spans"] == pytest.approx(official["precision_credit"], abs=1e-6)
    assert si["recall"] * si["gold_spans"] == pytest.approx(official["recall_credit"], abs=1e-6)
    assert si["f1"] == pytest.approx(official["f1"], abs=1e-6)


def test_readme_comparison_of_the_shipped_models_is_what_compare_prints(ptc_dir, dev_runs, capsys):
    import re
    from pathlib import Path

    from persuasion.cli import main

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    shown = re.search(r"\(default over fast\):\n\n```text\n(.*?)```", readme, re.S).group(1)
    assert main(["compare", "--data", str(ptc_dir), "--split", "dev", str(dev_runs["fast"][0]),
                 str(dev_runs["default"][0])]) == 0
    printed = "".join(line + "\n" for line in capsys.readouterr().out.splitlines()[1:6])
    share = re.compile(r"\d+\.\d% of draws")  # a share of draws may cross a rounding step as scores move
    assert_shows_the_same_output(share.sub("", printed), share.sub("", shown))


def test_model_card_and_readme_match_the_committed_measurements():
    from persuasion.eval.model_card import main

    assert main(["check"]) == 0


def test_the_model_card_stays_a_five_minute_read():
    from persuasion.eval.model_card import CARD

    # Tables are scanned, not read, and grow by a column group per shipped model; the prose is what takes time.
    # The front matter is for the Hub, not for readers.
    lines = CARD.read_text().split("---\n", 2)[2].splitlines()
    prose = sum(len(line.split()) for line in lines if not line.startswith("|"))
    table = sum(len(line.split()) for line in lines if line.startswith("|"))
    assert prose < 1000 and prose + table < 1500, (prose, table)


def test_the_model_cards_model_index_holds_each_shipped_models_dev_results():
    """The front matter's model-index (the Hugging Face model card spec) reports each model's own metrics.json."""
    import yaml

    from persuasion.eval.model_card import CARD

    front_matter = yaml.safe_load(CARD.read_text().split("---\n", 2)[1])
    index = {entry["name"]: entry["results"] for entry in front_matter["model-index"]}
    assert set(index) == {f"persuasion-{name}" for name in shipped_folders()}
    for name, folder in shipped_folders().items():
        metrics = json.loads((folder / "metrics.json").read_text())
        results = index[f"persuasion-{name}"]
        assert all(result["dataset"]["split"] == "dev" for result in results)
        reported = {metric["name"]: metric["value"] for result in results for metric in result["metrics"]}
        assert reported == {"SI precision": metrics["si"]["precision"], "SI recall": metrics["si"]["recall"],
                            "SI F1": metrics["si"]["f1"], "TC micro-F1": metrics["tc"]["micro_f1"],
                            "TC macro-F1": metrics["tc"]["macro_f1"], "FLC F1": metrics["flc"]["f1"]}


def test_the_model_card_names_as_many_weak_techniques_as_it_counts():
    """Technique names hold commas (Bandwagon,Reductio_ad_hitlerum), so each is quoted whole."""
    import re

    from persuasion.eval.model_card import CARD

    lines = [line for line in CARD.read_text().splitlines() if "**Rare techniques**" in line]
    assert lines
    for line in lines:
        count, names = re.search(r"for (\d+) of \d+: (.*)\.$", line).groups()
        named = re.findall(r"`([^`]+)`", names)
        assert len(named) == int(count) and set(named) <= set(TECHNIQUES), line


def test_the_model_card_shows_every_shipped_model_side_by_side(monkeypatch):
    from persuasion.eval import model_card

    checkpoint = next(iter(model_card.SHIPPED_MODELS.values()))
    monkeypatch.setattr(model_card, "SHIPPED_MODELS", {"first": checkpoint, "second": checkpoint})
    documents = model_card.rendered()
    card, readme = documents[model_card.CARD], documents[model_card.README]
    for name in ("first", "second"):
        assert f"| persuasion `{name}` (" in card and f"| persuasion `{name}` (" in readme
        assert f"`{name}` TC F1" in card  # one column group per model in the per-technique table
    assert "`second`: not measured yet" in card  # a model without eval/results/second/speed.json


def test_readme_example_prints_what_the_readme_shows(capsys):
    """README's first code block, run against the shipped model, prints README's output block."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    shown = re.search(r"Output of the shipped model.*?```text\n(.*?)```", readme, re.S).group(1)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert_shows_the_same_output(capsys.readouterr().out, shown)
    claims = re.findall(r'# text\[(\d+):(\d+)\]: "(.*?)"', code)  # a comment naming the fragment the offsets cut
    assert claims and all(namespace["text"][int(start):int(end)] == fragment for start, end, fragment in claims)


def test_readme_batch_example_prints_what_the_readme_shows(tmp_path):
    """README's `persuasion detect` example, run in a fresh folder with the installed command."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    example = re.search(r"For example, with `speech.txt`.*?```bash\n(.*?)```.*?```text\n(.*?)```", readme, re.S)
    environment = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(["bash", "-euc", example.group(1)], cwd=tmp_path, env=environment, capture_output=True,
                            text=True, timeout=300)
    assert_shows_the_same_output(result.stdout + result.stderr, example.group(2))


def shortened_answer(path: str, answer: dict) -> str:
    """An API answer as README shows it: scores to three decimals; detect's spans only, classify's first three."""
    if path == "/api/detect":
        shown = {"spans": [{**span, "score": round(span["score"], 3)} for span in answer["spans"]]}
    else:
        shown = {"spans": [{**span, "techniques": [{**row, "score": round(row["score"], 3)}
                                                   for row in span["techniques"][:3]]} for span in answer["spans"]]}
    return json.dumps(shown)


@pytest.mark.slow
def test_readme_api_examples_answer_what_the_readme_shows():
    """README's curl requests, sent to `persuasion serve`'s server running the shipped default model."""
    import http.client
    import re
    from pathlib import Path

    from conftest import running_server
    from persuasion.named_models import load_model

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    example = re.search(r"## Web page and JSON API.*?```bash\n(curl .*?)```.*?```text\n(.*?)```", readme, re.S)
    requests = re.findall(r"curl -s localhost:8000(/\S+) .*?-d '(.*?)'", example.group(1), re.S)
    assert [path for path, _ in requests] == ["/api/detect", "/api/classify"]
    printed = []
    with running_server(load_model("default"), model_name="default") as server:
        for path, body in requests:
            connection = http.client.HTTPConnection(*server.server_address[:2], timeout=300)
            connection.request("POST", path, body.encode(), {"Content-Type": "application/json"})
            response = connection.getresponse()
            assert response.status == 200
            printed.append(shortened_answer(path, json.load(response)))
            connection.close()
    assert_shows_the_same_output("\n".join(printed) + "\n", example.group(2))
