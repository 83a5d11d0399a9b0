"""Distillation: a tiny MPNet teacher and a tiny BERT student (two tokenizers), built in-process."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from conftest import mpnet_encoder_dir, tiny_bert_config_and_tokenizer, tiny_encoder_dir, write_tiny_corpus
from persuasion.taxonomy import TECHNIQUES


def build_tiny_teacher(directory: Path, seed: int = 0, window_tokens: int = 24, window_stride: int = 10) -> Path:
    """A randomly initialised tiny MPNet detector with a technique tagger, with the real MPNet tokenizer."""
    from transformers import AutoTokenizer, MPNetConfig

    from persuasion.model.checkpoint import DetectorSettings
    from persuasion.model.detector import Detector
    from persuasion.model.network import PersuasionNetwork

    tokenizer = AutoTokenizer.from_pretrained(mpnet_encoder_dir())
    torch.manual_seed(seed)
    config = MPNetConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=window_tokens + 8, pad_token_id=1)
    network = PersuasionNetwork.from_encoder_config(config, len(TECHNIQUES), technique_tagger=True)
    with torch.no_grad():  # confident, token-dependent outputs: something for a student to learn
        for head in (network.tag_head, network.token_technique_head, network.technique_head[-1]):
            head.weight.mul_(20.0)
    settings = DetectorSettings(window_tokens=window_tokens, window_stride=window_stride, technique_tagger=True)
    return Detector(network, tokenizer, settings).save(directory, half=False)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    return build_tiny_teacher(tmp_path_factory.mktemp("teacher"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_tiny_corpus(tmp_path_factory.mktemp("ptc") / "ptc", articles=8)


def counting_teacher(monkeypatch) -> list:
    """Record the article ids of each call of the teacher, which still runs."""
    from persuasion.train import distil

    calls = []
    score_texts = distil.score_texts

    def counted(network, tokenizer, settings, articles, *rest, **options):
        calls.append([article.article_id for article in articles])
        return score_texts(network, tokenizer, settings, articles, *rest, **options)

    monkeypatch.setattr(distil, "score_texts", counted)
    return calls


def taught_articles(corpus: Path, teacher_dir: Path, tmp_path: Path):
    """The tiny corpus encoded for the student, with the teacher's targets attached."""
    from persuasion.corpus import read_ptc_articles
    from persuasion.train.distil import attach_teacher_targets
    from persuasion.train.features import encode_article
    from persuasion.train.recipe import Recipe

    _, tokenizer = tiny_bert_config_and_tokenizer()
    articles = read_ptc_articles(corpus, "train")
    encoded = [encode_article(article, tokenizer, list(TECHNIQUES)) for article in articles]
    recipe = Recipe(teacher=str(teacher_dir), output_dir=str(tmp_path / "run"), distil_mix=0.5)
    attach_teacher_targets(recipe, [articles], encoded, list(TECHNIQUES))
    return tokenizer, encoded


# Alignment


def test_each_student_token_takes_the_teacher_token_covering_its_first_character():
    from persuasion.train.distil import covering_tokens

    teacher = torch.tensor([(0, 5), (6, 8), (8, 12), (14, 20)], dtype=torch.int32)
    student = [(0, 3), (3, 5), (6, 12), (12, 13), (15, 20), (21, 22)]
    # (3, 5) starts inside teacher token 0; 12 and 21 lie in no teacher token
    assert covering_tokens(teacher, student).tolist() == [0, 0, 1, -1, 3, -1]
    assert covering_tokens(teacher[:0], student).tolist() == [-1] * 6


def test_student_targets_follow_the_characters_not_the_token_positions():
    from persuasion.corpus import Article, GoldSpan
    from persuasion.train.distil import TextOutputs, student_targets
    from persuasion.train.features import encode_article

    _, tokenizer = tiny_bert_config_and_tokenizer()
    text = "Unbelievable lies, again"
    article = Article("1", text, [GoldSpan(0, 17, "Loaded_Language"), GoldSpan(19, 24, "Repetition")], has_gold=True)
    encoded = encode_article(article, tokenizer, list(TECHNIQUES))
    # A teacher that splits the text its own way: "Unbeliev|able lies|," then nothing over "again".
    teacher_offsets = torch.tensor([(0, 8), (8, 17), (17, 18)], dtype=torch.int32)
    tags = torch.tensor([[-1.0, -2.0, -3.0], [-4.0, -5.0, -6.0], [-7.0, -8.0, -9.0]]).half()
    techniques = torch.arange(3 * len(TECHNIQUES), dtype=torch.float16).reshape(3, -1)
    span_row = torch.full((1, len(TECHNIQUES)), -2.5, dtype=torch.float16)
    outputs = TextOutputs(teacher_offsets, tags, techniques, torch.tensor([(0, 17)], dtype=torch.int32), span_row)
    targets = student_targets(outputs, encoded, len(TECHNIQUES))

    words = [text[start:end] for start, end in encoded.document.offsets]
    assert words == ["Unbelievable", "lies", ",", "again"]
    assert targets.covered.tolist() == [True, True, True, False]  # nothing of the teacher's covers "again"
    for position, teacher_token in enumerate([0, 1, 2]):  # "lies" starts inside "able lies"
        assert torch.equal(targets.tag_log_probabilities[position], tags[teacher_token])
        assert torch.equal(targets.token_technique_logits[position], techniques[teacher_token])
    assert not targets.tag_log_probabilities[3].any() and not targets.token_technique_logits[3].any()
    # Gold spans are matched by their characters: the teacher knew "Unbelievable lies", not "again".
    fragments = [span.fragment for span in encoded.technique_spans]
    assert fragments == [(0, 17), (19, 24)]
    assert targets.span_known.tolist() == [True, False]
    assert torch.equal(targets.span_log_probabilities[0], span_row[0])


def test_two_real_tokenizers_align_on_a_real_sentence(teacher_dir, tmp_path):
    from transformers import AutoTokenizer

    from persuasion.model.windows import tokenize_document
    from persuasion.train.distil import covering_tokens

    text = "The corrupt elite's \u201cfake news\u201d \u2014 lies!\r\nWake up, America\u2026 \U0001F1FA\U0001F1F8"
    teacher = tokenize_document(AutoTokenizer.from_pretrained(teacher_dir), text)
    student = tokenize_document(tiny_bert_config_and_tokenizer()[1], text)
    index = covering_tokens(torch.tensor(teacher.offsets), student.offsets)
    for (start, _), token in zip(student.offsets, index.tolist()):
        if token >= 0:
            assert teacher.offsets[token][0] <= start < teacher.offsets[token][1]
        else:
            assert not any(s <= start < e for s, e in teacher.offsets)
    assert (index >= 0).float().mean() > 0.9


def test_the_teacher_reads_each_token_in_the_window_that_gives_it_the_most_context(corpus, teacher_dir):
    from persuasion.corpus import read_ptc_articles
    from persuasion.model.checkpoint import load_network
    from persuasion.model.windows import WindowFraming, batch_windows, plan_windows, tokenize_document
    from persuasion.train.distil import score_texts, technique_fragments

    network, tokenizer, settings = load_network(teacher_dir)
    article = read_ptc_articles(corpus, "train")[0]
    scored = score_texts(network, tokenizer, settings, [article])[0]
    document = tokenize_document(tokenizer, article.text)
    framing = WindowFraming.of(tokenizer)
    windows = plan_windows(len(document.token_ids), settings.window_tokens - framing.extra_tokens,
                           settings.window_stride)
    assert len(windows) >= 3
    with torch.no_grad():
        input_ids, attention_mask = batch_windows([document.token_ids[s:e] for s, e in windows], framing)
        hidden = network.encode(input_ids, attention_mask)
        per_window = network.tag_log_probabilities(hidden)
    last = len(document.token_ids) - 1
    for token in range(len(document.token_ids)):
        # context on the shorter side; the text's own start and end cut nothing off
        margins = [min(token - s if s > 0 else last, e - 1 - token if e <= last else last) if s <= token < e else -1
                   for s, e in windows]
        row = margins.index(max(margins))
        expected = per_window[row, framing.offset + token - windows[row][0]].half()
        assert torch.equal(scored.tag_log_probabilities[token], expected), token
    assert scored.token_offsets.tolist() == [list(offsets) for offsets in document.offsets]
    assert scored.span_bounds.tolist() == [list(f) for f in technique_fragments(article)]
    assert torch.allclose(scored.span_log_probabilities.float().exp().sum(-1), torch.ones(len(scored.span_bounds)),
                          atol=1e-2)


# The cache


def test_the_teacher_cache_is_reused_and_recomputed_when_teacher_or_texts_change(corpus, teacher_dir, tmp_path,
                                                                                 monkeypatch):
    import dataclasses

    from persuasion.corpus import read_ptc_articles
    from persuasion.model.checkpoint import read_settings, write_settings
    from persuasion.train.distil import teacher_outputs
    from persuasion.train.recipe import Recipe

    calls = counting_teacher(monkeypatch)
    articles = read_ptc_articles(corpus, "train")
    recipe = Recipe(teacher=str(teacher_dir), output_dir=str(tmp_path / "run"), distil_mix=0.5)

    first, report = teacher_outputs(recipe, articles, list(TECHNIQUES))
    assert len(calls) == 1 and not report["loaded_from_cache"]
    cache = Path(report["cache"])
    assert cache.parent == tmp_path / "run" / "teacher" and cache.is_file()
    again, report = teacher_outputs(recipe, articles, list(TECHNIQUES))
    assert len(calls) == 1 and report["loaded_from_cache"]
    for fresh, loaded in zip(first, again, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(dataclasses.astuple(fresh), dataclasses.astuple(loaded)))

    # re-tuning the teacher rewrites its decoding, not its network: still cached
    settings, decoding = read_settings(teacher_dir)
    write_settings(teacher_dir, settings, dataclasses.replace(decoding, span_threshold=0.77))
    teacher_outputs(recipe, articles, list(TECHNIQUES))
    assert len(calls) == 1

    # other texts: scored again
    teacher_outputs(recipe, articles[1:], list(TECHNIQUES))
    assert len(calls) == 2
    edited = [dataclasses.replace(articles[0], text=articles[0].text.replace("lied", "lies")), *articles[1:]]
    teacher_outputs(recipe, edited, list(TECHNIQUES))
    assert len(calls) == 3

    # another teacher: scored, into a file of its own
    other = build_tiny_teacher(tmp_path / "other-teacher", seed=1)
    _, report = teacher_outputs(dataclasses.replace(recipe, teacher=str(other)), articles, list(TECHNIQUES))
    assert len(calls) == 4 and Path(report["cache"]) != cache


def test_a_group_of_texts_added_to_a_run_is_scored_alone_and_the_others_come_from_their_cache(corpus, teacher_dir,
                                                                                            tmp_path, monkeypatch):
    from persuasion.corpus import read_ptc_articles
    from persuasion.train.distil import attach_teacher_targets
    from persuasion.train.features import encode_article
    from persuasion.train.recipe import Recipe

    calls = counting_teacher(monkeypatch)
    _, tokenizer = tiny_bert_config_and_tokenizer()
    articles = read_ptc_articles(corpus, "train")
    news, extra = articles[:5], articles[5:]  # as the training articles and the memes of a run
    recipe = Recipe(teacher=str(teacher_dir), output_dir=str(tmp_path / "run"), distil_mix=0.5)

    def encoded(texts):
        return [encode_article(article, tokenizer, list(TECHNIQUES)) for article in texts]

    alone = encoded(news)
    attach_teacher_targets(recipe, [news], alone, list(TECHNIQUES))
    both = encoded(news + extra)
    report = attach_teacher_targets(recipe, [news, extra], both, list(TECHNIQUES))
    assert calls == [[a.article_id for a in news], [a.article_id for a in extra]]  # only the new group scored
    assert len(report["caches"]) == 2 and not report["loaded_from_cache"] and report["texts"] == len(articles)
    for one, other in zip(alone, both):  # the cached group's targets are those it had alone
        assert torch.equal(one.teacher.tag_log_probabilities, other.teacher.tag_log_probabilities)
    assert all(article.teacher.covered.any() for article in both)


def test_a_shipped_model_teaches_by_its_name(corpus, tmp_path):
    from persuasion.corpus import read_ptc_articles
    from persuasion.model.checkpoint import network_digest, resolve_model
    from persuasion.train.distil import teacher_outputs
    from persuasion.train.loop import check_recipe
    from persuasion.train.recipe import Recipe

    recipe = Recipe(teacher="default", output_dir=str(tmp_path / "run"), distil_mix=0.5)
    check_recipe(recipe)  # from any folder, not only the repository's root
    articles = read_ptc_articles(corpus, "train")[:2]
    outputs, report = teacher_outputs(recipe, articles, list(TECHNIQUES))
    assert report["checkpoint"] == "default" and report["digest"] == network_digest(resolve_model("default"))
    assert [len(o.token_offsets) > 0 for o in outputs] == [True, True]


# The loss


def test_distillation_lowers_the_students_distance_from_the_teacher(corpus, teacher_dir, tmp_path):
    from persuasion.model.network import PersuasionNetwork
    from persuasion.model.windows import WindowFraming
    from persuasion.train.features import collate, cut_windows
    from persuasion.train.losses import TrainingNetwork, distillation_loss, training_loss

    tokenizer, encoded = taught_articles(corpus, teacher_dir, tmp_path)
    windows = [w for article in encoded[:3] for w in cut_windows(article, 20, random.Random(0))]
    batch = collate(windows, WindowFraming.of(tokenizer), len(TECHNIQUES))
    assert batch["teacher_taught"].any() and batch["teacher_span_known"].any()
    assert "teacher_token_technique_logits" in batch

    encoder_dir = tiny_encoder_dir(tmp_path / "student")
    torch.manual_seed(0)
    student = TrainingNetwork(PersuasionNetwork.from_encoder_name(str(encoder_dir), len(TECHNIQUES),
                                                                  technique_tagger=True), span_weight=2.0)

    def distance() -> float:
        student.eval()
        with torch.no_grad():
            outputs = student(batch["input_ids"], batch["attention_mask"], batch["tags"], batch["span_window"],
                              batch["span_bounds"])
            value = distillation_loss(outputs, batch, 2.0, 1.0, 0.5).item()
        student.train()
        return value

    initial = {name: tensor.clone() for name, tensor in student.state_dict().items()}

    def distance_after_training(distil_mix: float) -> float:
        student.load_state_dict(initial)
        torch.manual_seed(0)
        optimizer = torch.optim.AdamW(student.parameters(), lr=3e-3)
        for _ in range(20):
            loss = training_loss(student, batch, torch.ones(len(TECHNIQUES)), 1.0, 0.5, distil_mix=distil_mix,
                                 distil_temperature=2.0)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        return distance()

    before = distance()
    distilled, gold_only = distance_after_training(0.5), distance_after_training(0.0)
    assert distilled < 0.8 * before and distilled < 0.8 * gold_only


def test_a_distil_mix_of_0_is_exactly_the_plain_training_loss(corpus, teacher_dir, tmp_path):
    from persuasion.model.network import PersuasionNetwork
    from persuasion.model.windows import WindowFraming
    from persuasion.train.features import collate, cut_windows
    from persuasion.train.losses import TrainingNetwork, distillation_loss, gold_loss, training_loss

    tokenizer, encoded = taught_articles(corpus, teacher_dir, tmp_path)
    windows = [w for article in encoded for w in cut_windows(article, 20, random.Random(0))]
    framing = WindowFraming.of(tokenizer)
    taught = collate(windows, framing, len(TECHNIQUES))
    plain = collate([type(w)(w.token_ids, w.tags, w.token_techniques, w.spans) for w in windows], framing,
                    len(TECHNIQUES))
    assert not any(key.startswith("teacher") for key in plain)
    assert all(torch.equal(plain[key], taught[key]) for key in plain)

    encoder_dir = tiny_encoder_dir(tmp_path / "student")
    student = TrainingNetwork(PersuasionNetwork.from_encoder_name(str(encoder_dir), len(TECHNIQUES),
                                                                  technique_tagger=True), span_weight=2.0)
    weights = torch.ones(len(TECHNIQUES))

    def loss(batch, **distil) -> torch.Tensor:
        torch.manual_seed(0)  # the same dropout masks
        return training_loss(student, batch, weights, 1.0, 0.5, **distil)

    assert torch.equal(loss(taught, distil_mix=0.0, distil_temperature=2.0), loss(plain))
    # and the mix is what it says: at 1 the distillation loss alone, in between the weighted sum
    torch.manual_seed(0)
    outputs = student(taught["input_ids"], taught["attention_mask"], taught["tags"], taught["span_window"],
                      taught["span_bounds"])
    distilled = distillation_loss(outputs, taught, 2.0, 1.0, 0.5)
    gold = gold_loss(outputs, taught, weights, 1.0, 0.5)
    assert torch.allclose(loss(taught, distil_mix=1.0, distil_temperature=2.0), distilled)
    assert torch.allclose(loss(taught, distil_mix=0.25, distil_temperature=2.0), 0.75 * gold + 0.25 * distilled)
    assert distilled > 0


def test_every_epochs_windows_carry_the_teacher_targets_of_their_own_tokens_and_spans(corpus, teacher_dir, tmp_path):
    from persuasion.train.features import TeacherTargets
    from persuasion.train.data import EpochWindows

    _, encoded = taught_articles(corpus, teacher_dir, tmp_path)
    texts = encoded[:2]
    assert all(len(article.document.token_ids) > 20 for article in texts)  # longer than a window
    for number, article in enumerate(texts):  # targets that say which text, token and span they belong to
        tokens, spans = len(article.document.token_ids), len(article.technique_spans)
        article.teacher = TeacherTargets(
            torch.stack([torch.full((tokens,), number), torch.arange(tokens), torch.zeros(tokens)], -1),
            None, torch.ones(tokens, dtype=torch.bool), torch.arange(spans)[:, None].repeat(1, len(TECHNIQUES)),
            torch.ones(spans, dtype=torch.bool))
    windows = EpochWindows(texts, 20, seed=13)
    borders = set()
    for epoch in range(3):  # each epoch shifts the grid, so the windows start elsewhere
        windows.cut(epoch)
        borders |= {tuple(w.teacher.tag_log_probabilities[0, :2].int().tolist()) for w in windows.windows}
        for window in windows.windows:
            number, positions = window.teacher.tag_log_probabilities[:, 0], window.teacher.tag_log_probabilities[:, 1]
            article, start = texts[int(number[0])], int(positions[0])
            assert positions.tolist() == list(range(start, start + len(window.token_ids)))
            assert article.document.token_ids[start: start + len(window.token_ids)] == window.token_ids
            span_indices = window.teacher.span_log_probabilities[:, 0].tolist()
            assert [article.technique_spans[int(i)].first_token - start for i in span_indices] == [
                first for first, _, _ in window.spans]
    assert len(borders) > len(windows.windows)


# The command


def test_distil_command_trains_a_normal_checkpoint_and_a_second_run_reuses_the_cache(corpus, teacher_dir, tmp_path,
                                                                                     monkeypatch):
    from persuasion import Detector
    from persuasion.cli import main

    calls = counting_teacher(monkeypatch)
    encoder_dir = tiny_encoder_dir(tmp_path / "student")
    config = tmp_path / "tiny-distil.yaml"
    config.write_text(f"base_model: {encoder_dir}\nwindow_tokens: 24\ninference_stride: 16\nbatch_size: 4\n"
                      "validation_fraction: 0.25\nepochs: 1\ndistil_mix: 0.5\ndistil_temperature: 2.0\n")
    first = tmp_path / "first"
    command = ["distil", "--teacher", str(teacher_dir), "--config", str(config), "--data", str(corpus)]
    assert main([*command, "--output", str(first)]) == 0

    report = json.loads((first / "checkpoint" / "validation.json").read_text())
    assert len(calls) == 1 and len(calls[0]) == 6  # the training articles only
    assert not set(calls[0]) & set(report["validation_articles"])
    assert report["teacher"]["checkpoint"] == str(teacher_dir) and not report["teacher"]["loaded_from_cache"]
    assert [Path(cache).parent for cache in report["teacher"]["caches"]] == [first / "teacher"]
    recipe = json.loads((first / "recipe.json").read_text())
    assert recipe["teacher"] == str(teacher_dir) and recipe["distil_mix"] == 0.5
    text = (corpus / "train-articles" / "article1000.txt").read_text()
    result = Detector.load(first / "checkpoint", device="cpu").detect(text)
    assert all(text[span.start:span.end] == span.text for span in result.spans)

    second = tmp_path / "second"
    assert main([*command, "--output", str(second), "--teacher-cache", str(first / "teacher"),
                 "--set", "max_steps=2"]) == 0
    assert len(calls) == 1
    assert json.loads((second / "checkpoint" / "validation.json").read_text())["teacher"]["loaded_from_cache"]


def test_distil_command_errors_name_what_to_give(corpus, teacher_dir, tmp_path, capsys):
    from persuasion.cli import main

    config = tmp_path / "tiny.yaml"
    config.write_text("distil_mix: 0.5\n")
    assert main(["distil", "--config", str(config), "--data", str(corpus)]) == 2
    assert "--teacher" in capsys.readouterr().err
    assert main(["distil", "--teacher", str(teacher_dir), "--config", str(config), "--set", "distil_mix=0"]) == 2
    assert "distil_mix is 0" in capsys.readouterr().err
    assert main(["distil", "--teacher", str(teacher_dir), "--config", str(config), "--set", "distil_mix=1.5",
                 "--output", str(tmp_path / "run")]) == 2
    assert "between 0" in capsys.readouterr().err
    assert main(["distil", "--teacher", str(tmp_path / "nothing"), "--config", str(config),
                 "--output", str(tmp_path / "run2")]) == 2
    assert "not a persuasion checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path / "run2").exists()  # stopped before writing anything


def test_a_distilling_run_killed_mid_epoch_resumes_to_the_weights_of_an_uninterrupted_run(teacher_dir, tmp_path):
    """`persuasion train` distils too when the recipe names a teacher (so sweeps can compare distil recipes);
    the resumed run reads the teacher's outputs from its cache and ends where the uninterrupted one did."""
    from safetensors.torch import load_file

    from test_training import train_killed_and_resumed

    whole, killed = train_killed_and_resumed(
        tmp_path, f"epochs: 2\ndistil_mix: 0.5\ndistil_temperature: 2.0\nteacher: {teacher_dir}\n")
    expected, resumed = (load_file(folder / "checkpoint" / "model.safetensors") for folder in (whole, killed))
    assert all(torch.equal(expected[name], resumed[name]) for name in expected)
    log = (killed / "train.log").read_text()
    assert log.count("scores 6 texts") == 1 and "loaded from" in log
