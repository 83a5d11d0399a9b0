"""Ensembles (model/ensemble.py, `persuasion ensemble`, eval/ensemble.py) on tiny in-process checkpoints."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import build_tiny_checkpoint, make_article, write_tiny_corpus
from persuasion.model.network import CheckpointError

VALIDATION_IDS = ["1000", "1001"]


def as_trained(checkpoint, minutes: float = 1.5, validation_ids=VALIDATION_IDS, **settings):
    """A tiny checkpoint as `persuasion train` leaves one: with a validation report, and `settings` changed."""
    (checkpoint / "validation.json").write_text(json.dumps(
        {"validation": {}, "train_minutes": minutes, "validation_articles": validation_ids}))
    values = json.loads((checkpoint / "persuasion.json").read_text())
    values.update(settings)
    (checkpoint / "persuasion.json").write_text(json.dumps(values))
    return checkpoint


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """A plain member with its own temperatures, a CRF member, and a member with a sentence head."""
    root = tmp_path_factory.mktemp("members")
    return [as_trained(build_tiny_checkpoint(root / "plain", seed=1), span_temperature=1.6, technique_temperature=0.7),
            as_trained(build_tiny_checkpoint(root / "crf", seed=2, span_crf=True), minutes=2.0),
            as_trained(build_tiny_checkpoint(root / "sentence", seed=3, sentence_head=True))]


def test_an_ensemble_averages_what_its_members_say_each_calibrated_as_tuned(tmp_path, members):
    from persuasion import Detector
    from persuasion.model.ensemble import build_ensemble

    ensemble = Detector.load(build_ensemble(members, tmp_path / "ensemble"), device="cpu")
    alone = [Detector.load(member, device="cpu") for member in members]
    text = make_article(150, seed=4)
    spans = [(0, 12), (40, 90), (100, 101)]
    analysis = ensemble._analyse([text])[0]
    member_analyses = [detector._analyse([text])[0] for detector in alone]
    assert not np.allclose(member_analyses[0].p_inside, member_analyses[1].p_inside)  # so the mean is neither
    np.testing.assert_allclose(analysis.p_inside, np.mean([a.p_inside for a in member_analyses], axis=0), atol=1e-6)
    np.testing.assert_allclose(analysis.p_begin, np.mean([a.p_begin for a in member_analyses], axis=0), atol=1e-6)
    # the only member with a sentence head gives the sentence scores
    np.testing.assert_allclose(analysis.p_sentence, member_analyses[2].p_sentence, atol=1e-6)
    techniques = ensemble._technique_probabilities(analysis, spans)
    member_techniques = [d._technique_probabilities(a, spans) for d, a in zip(alone, member_analyses)]
    np.testing.assert_allclose(techniques, np.mean(member_techniques, axis=0), atol=1e-6)
    result = ensemble.detect(text)
    assert result.spans and all(text[span.start:span.end] == span.text for span in result.spans)


def test_a_checkpoint_averaged_with_its_copy_says_what_it_says_alone(tmp_path, members):
    from persuasion import Detector
    from persuasion.model.ensemble import build_ensemble

    shutil.copytree(members[0], tmp_path / "copy")
    ensemble = Detector.load(build_ensemble([members[0], tmp_path / "copy"], tmp_path / "ensemble"), device="cpu")
    alone = Detector.load(members[0], device="cpu")
    text = make_article(120, seed=5)
    together, by_itself = ensemble.detect(text).spans, alone.detect(text).spans
    assert by_itself and [(s.start, s.end, s.technique) for s in together] == [(s.start, s.end, s.technique)
                                                                              for s in by_itself]
    # the same up to float rounding: the ensemble passes probabilities through log and softmax once more
    np.testing.assert_allclose([s.score for s in together], [s.score for s in by_itself], rtol=1e-6)


def test_members_that_cannot_be_averaged_are_refused(tmp_path, members):
    from persuasion.model.ensemble import build_ensemble

    with pytest.raises(CheckpointError, match="two or more"):
        build_ensemble(members[:1], tmp_path / "one")
    with pytest.raises(CheckpointError, match="listed twice"):
        build_ensemble([members[0], members[0]], tmp_path / "twice")
    wide = build_tiny_checkpoint(tmp_path / "wide", window_tokens=24)
    with pytest.raises(CheckpointError, match="windows of 24 tokens"):
        build_ensemble([members[0], wide], tmp_path / "mixed")
    relabelled = as_trained(build_tiny_checkpoint(tmp_path / "relabelled"),
                            techniques=list(reversed(json.loads((members[0] / "persuasion.json").read_text())["techniques"])))
    with pytest.raises(CheckpointError, match="technique labels differ"):
        build_ensemble([members[0], relabelled], tmp_path / "relabelled-pair")
    pair = build_ensemble(members[:2], tmp_path / "pair")
    with pytest.raises(CheckpointError, match="is an ensemble itself"):
        build_ensemble([pair, members[2]], tmp_path / "nested")
    with pytest.raises(CheckpointError, match="exists already"):
        build_ensemble(members[:2], pair)
    assert not any((tmp_path / name).exists() for name in ("one", "twice", "mixed", "relabelled-pair", "nested"))


def test_ensemble_command_tunes_on_the_members_validation_split_and_the_folder_serves_every_command(tmp_path, members,
                                                                                                     capsys):
    from persuasion.cli import main

    data = write_tiny_corpus(tmp_path / "ptc", articles=4)
    output = tmp_path / "ensemble"
    assert main(["ensemble", *map(str, members[:2]), "--data", str(data), "--output", str(output)]) == 0
    report = json.loads((output / "validation.json").read_text())
    assert report["validation_articles"] == VALIDATION_IDS and report["train_minutes"] == 3.5
    assert report["tuned_on"].startswith("CPU")
    assert 0 <= report["validation"]["si"]["f1"] <= 1 and 0 <= report["validation"]["tc_micro_f1"] <= 1
    settings = json.loads((output / "persuasion.json").read_text())
    assert settings["ensemble_members"] == ["members/0", "members/1"]
    assert settings["span_threshold"] == report["validation"]["span_threshold"]
    assert "ensemble of 2 written" in capsys.readouterr().out

    assert main(["benchmark", "--data", str(data), "--split", "train", "--system", str(output),
                 "--out", str(tmp_path / "bench")]) == 0
    assert json.loads((tmp_path / "bench" / "metrics.json").read_text())["articles"] == 4
    articles = tmp_path / "articles.jsonl"
    articles.write_text(json.dumps({"id": "a", "text": make_article(80)}) + "\n")
    assert main(["detect", str(articles), "--model", str(output), "--output", str(tmp_path / "detected.jsonl")]) == 0
    assert json.loads((tmp_path / "detected.jsonl").read_text())["id"] == "a"
    # exported with its members: the copy loads on its own and carries the metrics the benchmark wrote
    shipped = tmp_path / "shipped"
    assert main(["export", str(output), "--data", str(data), "--split", "train", "--target", str(shipped)]) == 0
    assert json.loads((shipped / "metrics.json").read_text())["articles"] == 4
    assert (shipped / "members" / "1" / "model.safetensors").is_file()


def test_ensemble_command_refuses_members_validated_on_other_articles_and_leaves_no_folder(tmp_path, members, capsys):
    from persuasion.cli import main

    data = write_tiny_corpus(tmp_path / "ptc", articles=4)
    other = as_trained(shutil.copytree(members[1], tmp_path / "other"), validation_ids=["1002"])
    output = tmp_path / "ensemble"
    assert main(["ensemble", str(members[0]), str(other), "--data", str(data), "--output", str(output)]) == 2
    assert "other articles" in capsys.readouterr().err and not output.exists()
    # a PTC folder without the validation articles is a one-line error too
    assert main(["ensemble", *map(str, members[:2]), "--data", str(write_tiny_corpus(tmp_path / "small", articles=1)),
                 "--output", str(output)]) == 2
    assert "validation articles" in capsys.readouterr().err and not output.exists()


def test_an_ensemble_that_fails_while_tuning_leaves_no_half_built_folder(tmp_path, members, monkeypatch):
    from persuasion.train import tune
    from persuasion.train.ensemble import make_ensemble

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tune, "tune_detector", interrupted)
    output = tmp_path / "ensemble"
    with pytest.raises(KeyboardInterrupt):
        make_ensemble(members[:2], write_tiny_corpus(tmp_path / "ptc", articles=4), output)
    assert not output.exists()


def test_ensemble_measurement_scores_every_combination_on_validation_and_dev(tmp_path, members):
    from persuasion.eval.ensemble import main

    data = write_tiny_corpus(tmp_path / "ptc", articles=4)
    # a dev split: the train articles again, enough for the code path
    shutil.copytree(data / "train-articles", data / "dev-articles")
    shutil.copytree(data / "train-labels-task-flc-tc", data / "dev-labels-task-flc-tc")
    out = tmp_path / "ensembles.json"
    assert main(["--data", str(data), "--member", f"plain={members[0]}", "--member", f"crf={members[1]}",
                 "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [row["members"] for row in rows] == [["plain"], ["crf"], ["plain", "crf"]]
    assert all(0 <= row[split]["si_f1"] <= 1 for row in rows for split in ("validation", "dev"))


def test_an_ensemble_decodes_its_averaged_span_tags_without_its_members_technique_taggers(tmp_path, members):
    from persuasion import Detector
    from persuasion.model.ensemble import build_ensemble

    tagger = as_trained(build_tiny_checkpoint(tmp_path / "tagger", seed=5, technique_tagger=True), technique_tag_mix=0.5)
    ensemble = Detector.load(build_ensemble([tagger, members[0]], tmp_path / "ensemble"), device="cpu")
    assert not ensemble.settings.technique_tagger and ensemble.settings.technique_tag_mix == 0.0
    text = make_article(120, seed=6)
    assert ensemble._analyse([text])[0].p_technique is None
    assert all(text[span.start:span.end] == span.text for span in ensemble.detect(text).spans)
