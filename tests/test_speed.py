"""`persuasion speed` on a tiny corpus and the tiny model: every figure is there and positive.

No timing thresholds: timings on a shared machine flake; the figures' presence and bookkeeping do not.
"""

from __future__ import annotations

import json
import random

import pytest

from persuasion.cli import main

WORDS = "they will destroy our great nation and every patriot must stand up now against the lies".split()
SYSTEMS = ["detector fp32 (full pipeline)", "detector bf16 (full pipeline)", "detector int8 (full pipeline)",
           "transformers pipeline (reference)"]


@pytest.fixture(scope="module")
def ptc_folder(tmp_path_factory):
    """The PTC layout as the reader needs it: `dev-articles/article<ID>.txt`, lengths far apart."""
    folder = tmp_path_factory.mktemp("ptc")
    articles = folder / "dev-articles"
    articles.mkdir()
    rng = random.Random(0)
    for article_id, num_words in [(111, 12), (222, 400), (333, 60), (444, 1500), (555, 30)]:
        sentences = [" ".join(rng.choice(WORDS) for _ in range(10)).capitalize() + "." for _ in range(num_words // 10)]
        (articles / f"article{article_id}.txt").write_text("Title here\n\n" + " ".join(sentences) + "\n",
                                                          encoding="utf-8")
    return folder


def test_speed_reports_every_system(ptc_folder, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "results" / "new-model" / "speed.json"  # its folder is made, not an error after timing
    code = main(["speed", "--data", str(ptc_folder), "--split", "dev", "--model", str(tiny_checkpoint),
                 "--limit", "3", "--batch-size", "8", "--json", str(out)])
    assert code == 0

    figures = json.loads(out.read_text())
    assert figures["documents"] == 3 and figures["tokens"] > 0
    assert [row["system"] for row in figures["systems"]] == SYSTEMS
    for row in figures["systems"]:
        assert row["documents"] == 3
        assert row["tokens"] == figures["tokens"]  # one token count for every system, so rates compare
        assert row["seconds"] > 0 and row["tokens_per_second"] > 0
        assert row["ratio_to_reference"] > 0
        assert row["peak_rss_mib"] > 0 and row["peak_increase_mib"] >= 0
    assert figures["systems"][-1]["ratio_to_reference"] == pytest.approx(1.0)
    assert figures["auto_precision"] == ("bf16" if figures["bf16_native"] else "fp32")

    printed = capsys.readouterr().out
    for system in SYSTEMS:
        assert system in printed
    assert f"{figures['tokens']:,} tokens" in printed


def test_a_model_with_a_context_classifier_is_also_timed_without_it(ptc_folder, tmp_path, capsys):
    from conftest import add_tiny_context_classifier, build_tiny_checkpoint

    checkpoint = add_tiny_context_classifier(build_tiny_checkpoint(tmp_path / "with-context"))
    out = tmp_path / "speed.json"
    assert main(["speed", "--data", str(ptc_folder), "--split", "dev", "--model", str(checkpoint), "--limit", "2",
                 "--precision", "fp32", "--json", str(out)]) == 0
    systems = [row["system"] for row in json.loads(out.read_text())["systems"]]
    assert systems == ["detector fp32 (full pipeline)", "detector fp32 without its context classifier",
                       "transformers pipeline (reference)"]


def test_long_mode_reports_each_document_size(ptc_folder, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "long.json"
    assert main(["speed", "--data", str(ptc_folder), "--model", str(tiny_checkpoint), "--device", "cpu", "--long",
                 "--long-sizes", "150000,3000", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert [row["characters"] for row in figures["documents"]] == [3000, 150000]  # smallest first
    for row in figures["documents"]:
        assert row["seconds"] > 0 and row["characters_per_second"] > 0 and row["peak_rss_mib"] > 0
    assert figures["time_ratio_to_linear"] > 0 and figures["limit_mib"] == 1024
    printed = capsys.readouterr().out
    assert "150,000 characters" in printed and "characters/s" in printed and "linear" in printed


def test_a_generated_long_document_has_the_size_asked_for():
    from persuasion.eval.speed import document_of_characters

    assert document_of_characters(["One two.", "Three"], 25) == "One two.\n\nThree\n\nOne two.\n\n"[:25]
    assert len(document_of_characters(["x" * 10], 1_000)) == 1_000


def test_reference_pipeline_reads_every_token_of_a_long_text(tiny_checkpoint, tiny_detector):
    from persuasion.eval.speed import build_reference

    text = " ".join(WORDS * 40) + " final words"
    entities = build_reference(tiny_checkpoint, tiny_detector, "cpu")(text)
    assert len(tiny_detector.tokenizer(text)["input_ids"]) > 10 * tiny_detector.settings.window_tokens
    assert entities[-1]["end"] == len(text)  # not truncated to the first window
    assert entities[0]["start"] == 0


@pytest.mark.parametrize("arguments, message", [
    (["--data", "{missing}"], "no such folder"),
    (["--data", "{ptc}", "--split", "test"], "no such folder"),
    (["--data", "{ptc}", "--limit", "-1"], "--limit"),
    (["--data", "{ptc}", "--batch-size", "0"], "--batch-size"),
    (["--data", "{ptc}", "--model", "{missing}"], "not a persuasion checkpoint"),
    (["--data", "{ptc}", "--long", "--long-sizes", "10,x"], "--long-sizes"),
    (["--data", "{ptc}", "--precision", "fp32,fp8"], "--precision"),
])
def test_user_errors_are_one_line(ptc_folder, tmp_path, capsys, arguments, message):
    arguments = [a.format(missing=tmp_path / "nowhere", ptc=ptc_folder) for a in arguments]
    assert main(["speed", *arguments]) == 2
    error = capsys.readouterr().err
    assert error.startswith("persuasion speed: error:") and message in error
    assert error.count("\n") == 1
