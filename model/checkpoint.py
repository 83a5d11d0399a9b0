"""The checkpoint folder: its layout, and every file in it, each read and written here alone.

A checkpoint is a normal Hugging Face model folder (the encoder's config.json, the weights as
fp16 safetensors, in shards for large encoders, the tokenizer files) plus:

- `persuasion.json`: `DetectorSettings` (label map, windows, base model, the recipe that trained it)
  and the tuned `Decoding`;
- `validation.json`: the validation report of the run (scores after tuning, the history of every
  validation during training, the held-out article ids, where it trained and was tuned);
- `metrics.json`: the benchmark's dev metrics, for shipped models.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from persuasion.corpus import read_ptc_articles
from persuasion.errors import PersuasionError, reject_unknown_keys
from persuasion.model.decoding import Decoding
from persuasion.taxonomy import TECHNIQUES

SETTINGS_FILE = "persuasion.json"
VALIDATION_FILE = "validation.json"
METRICS_FILE = "metrics.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
# Shards stay under the 95 MB a file may weigh in the repository.
MAX_SHARD_BYTES = 90_000_000

SHIPPED_DIR = Path(__file__).parent / "shipped"
# The models inside the package, by the name users give (`Detector.load("fast")`, `--model fast`): the
# default is the most accurate on validation, fast the one a laptop runs over an archive.
SHIPPED_NAMES = ("default", "fast")
# The recipe that trains each (README and the model card name it).
SHIPPED_CONFIGS = {"default": "configs/mpnet-cpu.yaml", "fast": "configs/minilm-cpu.yaml"}
# The recipe of each shipped model's context classifier (model/context.py), for those that have one.
SHIPPED_CONTEXT_CONFIGS = {"default": "configs/context-minilm.yaml"}


class CheckpointError(PersuasionError):
    """A checkpoint directory is missing a file or does not describe a persuasion model."""


@dataclass(frozen=True)
class DetectorSettings:
    """What inference needs besides the weights and the decoding."""

    techniques: tuple[str, ...] = tuple(TECHNIQUES)
    window_tokens: int = 128  # including the tokenizer's framing tokens
    window_stride: int = 96  # content tokens between window starts at inference
    technique_tagger: bool = False  # the network kept its per-token technique tagger
    base_model: str = ""
    recipe: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: dict, source: str = SETTINGS_FILE) -> "DetectorSettings":
        reject_unknown_keys(cls, values, source, "setting", CheckpointError)
        settings = cls(**values)
        return replace(settings, techniques=tuple(settings.techniques))

    def to_dict(self) -> dict:
        values = asdict(self)
        values["techniques"] = list(self.techniques)
        return values


def shipped_folders() -> dict[str, Path]:
    """The shipped models inside the package, by name."""
    return {name: SHIPPED_DIR / name for name in SHIPPED_NAMES if (SHIPPED_DIR / name / SETTINGS_FILE).is_file()}


def resolve_model(model: str | Path | None) -> Path:
    """The checkpoint folder a model stands for: a shipped model's name (None: the default) or a folder.
    Every command and integration resolves models here, so a wrong name gets this one error."""
    name = str(model or "default")
    directory = SHIPPED_DIR / name if name in SHIPPED_NAMES else Path(name)
    if not (directory / SETTINGS_FILE).is_file():
        raise CheckpointError(f"model {name!r}: not a persuasion checkpoint (no {SETTINGS_FILE} in {directory}); "
                              f"give {' or '.join(SHIPPED_NAMES)}, or a folder `persuasion train` wrote")
    return directory


def write_settings(directory: str | Path, settings: DetectorSettings, decoding: Decoding) -> None:
    """Write `persuasion.json` alone: re-tuning a checkpoint changes its decoding, never its weights."""
    values = {**settings.to_dict(), "decoding": decoding.to_dict()}
    (Path(directory) / SETTINGS_FILE).write_text(json.dumps(values, indent=2) + "\n")


def read_settings(directory: str | Path) -> tuple[DetectorSettings, Decoding]:
    path = Path(directory) / SETTINGS_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory}: not a persuasion checkpoint (missing {SETTINGS_FILE})")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: not valid JSON") from None
    decoding = Decoding.from_dict(values.pop("decoding", {}), source=str(path))
    return DetectorSettings.from_dict(values, source=str(path)), decoding


def save_weights(network: torch.nn.Module, directory: str | Path, half: bool = True) -> None:
    """The network's weights as safetensors (fp16 unless half=False), in shards where they exceed a shard."""
    from huggingface_hub import split_torch_state_dict_into_shards

    directory = Path(directory)
    state = {name: (tensor.half() if half and tensor.is_floating_point() else tensor).contiguous()
             for name, tensor in network.state_dict().items()}
    for stale in [*directory.glob("model*.safetensors"), directory / WEIGHTS_INDEX_FILE]:
        stale.unlink(missing_ok=True)
    split = split_torch_state_dict_into_shards(state, filename_pattern="model{suffix}.safetensors",
                                               max_shard_size=MAX_SHARD_BYTES)
    for filename, names in split.filename_to_tensors.items():
        save_file({name: state[name] for name in names}, directory / filename, metadata={"format": "pt"})
    if split.is_sharded:
        index = {"metadata": split.metadata, "weight_map": split.tensor_to_filename}
        (directory / WEIGHTS_INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")


def load_weights(directory: str | Path) -> dict[str, torch.Tensor]:
    """The state dict `save_weights` wrote, in float32."""
    state = {}
    for path in weight_files(directory):
        if not path.is_file():
            raise CheckpointError(f"{directory}: weight shard {path.name} is missing")
        state.update(load_file(path))
    return {name: tensor.float() if tensor.is_floating_point() else tensor for name, tensor in state.items()}


def weight_files(directory: str | Path) -> list[Path]:
    """The safetensors files that hold a checkpoint's weights: one, or the shards its index names."""
    directory = Path(directory)
    if (directory / WEIGHTS_INDEX_FILE).is_file():
        weight_map = json.loads((directory / WEIGHTS_INDEX_FILE).read_text())["weight_map"]
        return [directory / name for name in sorted(set(weight_map.values()))]
    if (directory / WEIGHTS_FILE).is_file():
        return [directory / WEIGHTS_FILE]
    raise CheckpointError(f"{directory}: not a persuasion checkpoint (missing {WEIGHTS_FILE})")


def load_network(directory: str | Path):
    """(network, tokenizer, settings) of a checkpoint folder, the network in float32 and in eval mode: what a
    caller needs to run the network itself (a distillation teacher) rather than through a Detector."""
    from transformers import AutoConfig, AutoTokenizer

    from persuasion.model.network import PersuasionNetwork

    directory = Path(directory)
    settings, _ = read_settings(directory)
    if not (directory / "config.json").is_file():
        raise CheckpointError(f"{directory}: not a persuasion checkpoint (missing config.json)")
    network = PersuasionNetwork.from_encoder_config(AutoConfig.from_pretrained(directory), len(settings.techniques),
                                                    technique_tagger=settings.technique_tagger)
    network.load_state_dict(load_weights(directory))
    return network.eval(), AutoTokenizer.from_pretrained(directory), settings


def network_digest(directory: str | Path) -> str:
    """sha256 of what a checkpoint's network computes from text: its weights, encoder config and tokenizer
    files, and its window settings; not its decoding, which re-tuning rewrites without touching the network."""
    directory = Path(directory)
    settings, _ = read_settings(directory)
    digest = hashlib.sha256(json.dumps({
        "techniques": list(settings.techniques), "window_tokens": settings.window_tokens,
        "window_stride": settings.window_stride, "technique_tagger": settings.technique_tagger}).encode())
    encoder_files = [directory / name for name in ("config.json", "tokenizer.json", "tokenizer_config.json",
                                                   "vocab.txt", "special_tokens_map.json")]
    for path in [*weight_files(directory), *(path for path in encoder_files if path.is_file())]:
        digest.update(path.name.encode() + b"\0" + _file_sha256(path).encode())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_files(directory: str | Path) -> list[Path]:
    """The files that make up a checkpoint (what export copies), without run logs or state."""
    directory = Path(directory)
    names = {SETTINGS_FILE, VALIDATION_FILE, METRICS_FILE, WEIGHTS_INDEX_FILE, "config.json", "vocab.txt",
             "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}
    return sorted(path for path in directory.iterdir()
                  if path.name in names or (path.name.startswith("model") and path.suffix == ".safetensors"))


# The validation report

def write_validation_report(directory: str | Path, report: dict) -> None:
    (Path(directory) / VALIDATION_FILE).write_text(json.dumps(report, indent=2) + "\n")


def read_validation_report(directory: str | Path) -> dict:
    path = Path(directory) / VALIDATION_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory}: no {VALIDATION_FILE}; give a checkpoint folder written by `persuasion train`")
    return json.loads(path.read_text())


SELECTION = "SI F1 + TC micro-F1 + FLC F1"


def selection_score(scores: dict) -> float:
    """What model selection maximises on the validation split: SI F1 + TC micro-F1 + FLC F1, the full task,
    so that long spans under one label, which inflate SI F1, lose on FLC."""
    return scores["si_f1"] + scores["tc_micro_f1"] + scores["flc_f1"]


def validation_selection(report: dict) -> float:
    """The selection score of a checkpoint after tuning, from its validation report."""
    validation = report["validation"]
    return selection_score({"si_f1": validation["si"]["f1"], "tc_micro_f1": validation["tc_micro_f1"],
                            "flc_f1": validation["flc_f1"]})


def held_out_ids(report: dict) -> list[str]:
    """The validation split's article ids, sorted: two reports compare only if these are equal."""
    return sorted(report["validation_articles"])


def read_metrics(directory: str | Path) -> dict | None:
    path = Path(directory) / METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def split_articles(data_dir: str | Path, directory: str | Path) -> tuple[list, list]:
    """The PTC train articles as the checkpoint's run split them: (those it trained on, those it held out for
    validation, listed in its validation.json)."""
    validation_ids = set(held_out_ids(read_validation_report(directory)))
    articles = read_ptc_articles(data_dir, "train")
    held_out = [article for article in articles if article.article_id in validation_ids]
    if len(held_out) != len(validation_ids):
        raise CheckpointError(f"{data_dir}: holds {len(held_out)} of the {len(validation_ids)} validation articles of "
                              f"{directory}; give the PTC folder it was trained on")
    return [article for article in articles if article.article_id not in validation_ids], held_out
