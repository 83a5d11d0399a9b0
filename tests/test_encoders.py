"""The bundled base encoders: MPNet's split zip is joined, checked and unpacked atomically."""

import hashlib
import io
import zipfile

import pytest

from persuasion.train.encoders import EncoderError, assemble_split_zip, resolve_base_model


def split_zip(tmp_path, files: dict[str, bytes], pieces: int = 3):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    data = buffer.getvalue()
    size = -(-len(data) // pieces)
    paths = []
    for index in range(pieces):
        path = tmp_path / f"model.zip.00{index + 1}"
        path.write_bytes(data[index * size: (index + 1) * size])
        paths.append(path)
    return paths


def test_the_pieces_join_into_a_model_folder_without_the_stray_files(tmp_path):
    weights = b"weights" * 1000
    pieces = split_zip(tmp_path, {"all-mpnet-base-v2/model.safetensors": weights,
                                  "all-mpnet-base-v2/config.json": b"{}",
                                  "all-mpnet-base-v2/desktop.ini": b"[.ShellClassInfo]",
                                  "all-mpnet-base-v2/1_Pooling/config.json": b"{}"})
    folder = tmp_path / "cache" / "all-mpnet-base-v2"
    assemble_split_zip(pieces, folder, hashlib.sha256(weights).hexdigest())
    assert sorted(path.name for path in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert (folder / "model.safetensors").read_bytes() == weights
    assert [path.name for path in folder.parent.iterdir()] == ["all-mpnet-base-v2"]  # no temporary left


def test_a_bad_checksum_is_a_one_line_error_and_leaves_no_folder(tmp_path):
    pieces = split_zip(tmp_path, {"all-mpnet-base-v2/model.safetensors": b"damaged"})
    folder = tmp_path / "cache" / "all-mpnet-base-v2"
    with pytest.raises(EncoderError, match="sha256") as error:
        assemble_split_zip(pieces, folder, "0" * 64)
    assert "\n" not in str(error.value)
    assert list(folder.parent.iterdir()) == []


def test_pieces_out_of_order_are_not_a_zip(tmp_path):
    pieces = split_zip(tmp_path, {"all-mpnet-base-v2/model.safetensors": bytes(range(256)) * 400})
    with pytest.raises(EncoderError, match="do not form a zip|no model.safetensors"):
        assemble_split_zip(list(reversed(pieces)), tmp_path / "cache" / "all-mpnet-base-v2", "0" * 64)


def test_a_folder_name_passes_through(tmp_path):
    assert resolve_base_model(str(tmp_path)) == str(tmp_path)
