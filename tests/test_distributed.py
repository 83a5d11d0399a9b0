"""`persuasion detect --engine ray` and `detect_dataset` on a local Ray instance (loopback only) with the fast model.

The Ray engine must write the local engine's records, id for id, exactly once: with an actor killed mid-job,
and after the driver itself was killed and the job resumed.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import make_article, missing
from persuasion.cli import main

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = 200
# Both engines in fp32: `auto` is bf16 on a CPU with native bf16, where a document's neighbours in a forward pass
# move its scores by more than the 1e-6 these tests allow.
FP32 = ["--precision", "fp32"]
RAY_OPTIONS = ["--engine", "ray", "--actors", "2", "--cpus-per-actor", "0.5", "--records-per-file", "10"]


@pytest.fixture(autouse=True)
def ray_extra():
    if importlib.util.find_spec("ray") is None:
        missing('needs the [ray] extra: pip install -e ".[ray]"')


@pytest.fixture(scope="module")
def ray_instance():
    """A local Ray instance on loopback for this module's in-process jobs; the CLI keeps a running one."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level=logging.WARNING,
             log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[Path]:
    """200 documents: text files, JSONL and CSV rows, among them each kind of input the reader rejects."""
    root = tmp_path_factory.mktemp("corpus")
    articles = root / "articles"
    articles.mkdir()
    for number in range(20):
        (articles / f"{number:02d}.txt").write_text(make_article(10 + number, seed=number), encoding="utf-8")
    (articles / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (articles / "latin1.txt").write_bytes("Le café est prêt.".encode("latin-1"))
    rows = [json.dumps({"id": f"r{number}", "text": make_article(5 + number % 20, seed=100 + number)})
            for number in range(150)]
    rows[40:40] = ["not json", json.dumps({"id": "no-text"}), json.dumps({"id": "number", "text": 42}), "[1, 2]"]
    (root / "rows.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    with open(root / "table.csv", "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)  # quotes the texts' line breaks
        writer.writerows([["id", "text"]] + [[f"c{number}", make_article(8, seed=300 + number)] for number in range(23)]
                         + [["c23", "too", "many", "fields"]])
    return [articles, root / "rows.jsonl", root / "table.csv"]


@pytest.fixture(scope="module")
def local_records(corpus, tmp_path_factory) -> list[dict]:
    output = tmp_path_factory.mktemp("local") / "found.jsonl"
    assert main(["detect", *FP32, *map(str, corpus), "--model", "fast", "--quiet", "-o", str(output)]) == 1
    records = read_jsonl(output)
    assert len(records) == DOCUMENTS and sum("error" in record for record in records) == 7
    return records


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def shard_records(folder: Path) -> list[dict]:
    """Every record in the folder's shards, in the order the shards and their lines hold them."""
    return [record for shard in sorted(folder.glob("part-*.jsonl")) for record in read_jsonl(shard)]


def by_index(records: list[dict]) -> list[dict]:
    return sorted(records, key=lambda record: record["index"])


def assert_same_records(found: list[dict], expected: list[dict]) -> None:
    """Equal field for field, id for id, scores to 1e-6: a document's neighbours in a forward pass differ between
    the engines, and with them the padding, which moves a score in about its 7th place."""
    assert [record["index"] for record in found] == [record["index"] for record in expected]
    for record, wanted in zip(found, expected):
        assert same(record, wanted), (record, wanted)


def same(value, wanted) -> bool:
    if isinstance(value, float) and isinstance(wanted, float):
        return abs(value - wanted) <= 1e-6
    if isinstance(value, dict) and isinstance(wanted, dict):
        return list(value) == list(wanted) and all(same(value[key], wanted[key]) for key in value)
    if isinstance(value, list) and isinstance(wanted, list):
        return len(value) == len(wanted) and all(map(same, value, wanted))
    return type(value) is type(wanted) and value == wanted


def scorer_processes() -> list[int]:
    """Process ids of the actors that score (Ray names a worker process after the actor it runs)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if entry.name.isdigit() and b"DocumentScorer" in command:
            pids.append(int(entry.name))
    return pids


def test_the_ray_engine_writes_the_local_engines_records_once_with_an_actor_killed_mid_job(
        ray_instance, corpus, local_records, tmp_path):
    output = tmp_path / "found"
    killed: list[int] = []

    def kill_a_scorer_once_records_appear():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            pids = scorer_processes()
            if pids and any(output.glob("part-*.jsonl")):
                os.kill(pids[0], signal.SIGKILL)
                killed.extend([pids[0], len(shard_records(output))])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_scorer_once_records_appear)
    killer.start()
    status = main(["detect", *FP32, *map(str, corpus), "--model", "fast", "--quiet", "-o", str(output), *RAY_OPTIONS])
    killer.join()

    assert killed, "no scoring actor was found to kill: nothing was tested"
    records_when_killed = killed[1]
    assert records_when_killed < DOCUMENTS, "the job had finished when the actor was killed: nothing was tested"
    assert status == 1  # as the local engine's: some documents have an error record
    records = shard_records(output)
    assert len(records) == DOCUMENTS  # no record twice
    assert_same_records(by_index(records), local_records)
    assert len(list(output.glob("part-*.jsonl"))) > 1


def detect_process(corpus, output: Path, *arguments: str) -> list[str]:
    return [sys.executable, "-m", "persuasion.cli", "detect", *FP32, *map(str, corpus), "--model", "fast", "--quiet",
            "-o", str(output), *RAY_OPTIONS, *arguments]


def test_resume_after_the_driver_was_killed_writes_every_record_once(corpus, local_records, tmp_path):
    output = tmp_path / "found"
    environment = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    with open(tmp_path / "driver.log", "wb") as log:
        driver = subprocess.Popen(detect_process(corpus, output), cwd=ROOT, env=environment, start_new_session=True,
                                  stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 300
        while not any(output.glob("part-*.jsonl")) and driver.poll() is None:
            assert time.monotonic() < deadline, "the Ray job wrote no shard in 300 s"
            time.sleep(0.05)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    finally:
        time.sleep(1)
        try:  # the local Ray instance the driver started goes with it; make sure of it
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    kept = shard_records(output)
    assert 0 < len(kept) < DOCUMENTS, "the job had finished when the driver was killed: nothing was tested"
    shards_before = set(output.glob("part-*.jsonl"))

    other_job = subprocess.run(detect_process(corpus, output, "--resume", "--min-score", "0.5"), cwd=ROOT,
                               env=environment, capture_output=True, text=True, timeout=120)
    assert other_job.returncode == 2 and "holds the records of another job (different min_score)" in other_job.stderr
    assert set(output.glob("part-*.jsonl")) == shards_before

    resumed = subprocess.run(detect_process(corpus, output, "--resume"), cwd=ROOT, env=environment,
                             capture_output=True, text=True, timeout=300)

    new_records = [record for shard in set(output.glob("part-*.jsonl")) - shards_before for record in read_jsonl(shard)]
    assert resumed.returncode == (1 if any("error" in record for record in new_records) else 0), resumed.stderr
    records = shard_records(output)
    assert len(records) == DOCUMENTS and len(new_records) == DOCUMENTS - len(kept)
    assert_same_records(by_index(records), local_records)


def test_parquet_in_and_out_and_the_python_api(ray_instance, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as parquet

    from persuasion import Detector
    from persuasion.distributed import detect_dataset

    texts = [make_article(30 + 10 * number, seed=500 + number) for number in range(6)]
    table = pa.table({"id": ["p0", "p1", None, "p3", "p4", "p5", "p6"],
                      "body": texts[:3] + [None] + texts[3:]})
    articles = tmp_path / "articles.parquet"
    parquet.write_table(table, articles)
    local, output = tmp_path / "local.jsonl", tmp_path / "found"

    assert main(["detect", *FP32, str(articles), "--text-field", "body", "--model", "fast", "--quiet", "-o", str(local)]) == 1
    assert main(["detect", *FP32, str(articles), "--text-field", "body", "--model", "fast", "--quiet", "-o", str(output),
                 "--format", "parquet", *RAY_OPTIONS]) == 1

    written = parquet.read_table(output).to_pylist()
    as_jsonl = [{key: value for key, value in record.items() if value is not None} for record in written]
    assert_same_records(by_index(as_jsonl), read_jsonl(local))
    assert [record["id"] for record in by_index(written)] == ["p0", "p1", f"{articles}:3", "p3", "p4", "p5", "p6"]
    assert by_index(written)[3]["error"] == "'body' is null, not a string"

    import ray

    records = detect_dataset(ray.data.read_parquet(str(articles)), model="fast", text_field="body", actors=1,
                             load_options={"precision": "fp32"})
    found = {record["id"]: record for record in records.take_all()}
    detector = Detector.load("fast", precision="fp32")
    for document_id, text in zip(["p0", "p1", None, "p4", "p5", "p6"], texts):  # None: the row without an id
        assert same(found[document_id]["spans"], detector.detect(text).to_dict()["spans"]), document_id
        assert found[document_id]["error"] is None
    assert found["p3"]["error"] == "'body' is null, not a string" and found["p3"]["spans"] is None


# Arguments the Ray engine refuses: one line, exit 2, before Ray starts


@pytest.mark.parametrize("arguments, message", [
    (["--engine", "ray"], "--engine ray needs --output FOLDER"),
    (["--engine", "ray", "-o", "found", "--format", "csv"], "--engine ray writes jsonl or parquet shards"),
    (["--engine", "ray", "-o", "found", "--shard", "1/2"], "--shard is the local engine's"),
    (["--engine", "ray", "-o", "found", "--actors", "0"], "--actors 0: must be at least 1"),
    (["--engine", "ray", "-o", "found", "--records-per-file", "0"], "--records-per-file 0: must be at least 1"),
    (["-", "--engine", "ray", "-o", "found"], "- (stdin) cannot be read by Ray's workers"),
    (["--engine", "ray", "-o", "found", "--model", "nonesuch"], "model 'nonesuch': not a persuasion checkpoint"),
    (["--engine", "ray", "-o", "good.txt"], "--output good.txt: is a file"),
    (["--engine", "ray", "-o", "earlier"], "earlier is not empty; pass --resume"),
    (["--engine", "ray", "-o", "earlier", "--resume"], "earlier has no readable _job.json"),
    (["--address", "auto", "-o", "found.jsonl"], "--address needs --engine ray"),
    (["--format", "parquet", "-o", "found"], "--format parquet needs --engine ray"),
])
def test_an_unusable_ray_command_is_one_line_and_exit_2(tmp_path, capsys, arguments, message):
    (tmp_path / "good.txt").write_text("They always lie to you.", encoding="utf-8")
    (tmp_path / "earlier").mkdir()
    (tmp_path / "earlier" / "notes.txt").write_text("not a shard", encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        assert main(["detect", "good.txt", *arguments, "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error, error
    assert sorted(path.name for path in tmp_path.iterdir()) == ["earlier", "good.txt"]


def test_a_pool_that_leaves_no_cpu_for_reading_is_one_line_and_exit_2(ray_instance, tmp_path, capsys):
    (tmp_path / "good.txt").write_text("They always lie to you.", encoding="utf-8")

    assert main(["detect", str(tmp_path / "good.txt"), "--engine", "ray", "--actors", "2", "-o",
                 str(tmp_path / "found"), "--quiet"]) == 2

    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "2 actors of 1 CPU do not fit in this Ray cluster's 2 CPUs" in error, error
    assert not list((tmp_path / "found").glob("part-*"))


def test_without_the_ray_extra_the_engine_is_one_line_naming_it(tmp_path):
    (tmp_path / "hide").mkdir()
    (tmp_path / "hide" / "sitecustomize.py").write_text("import sys\nsys.modules['ray'] = None\n")
    (tmp_path / "good.txt").write_text("They always lie to you.", encoding="utf-8")
    command = [str(Path(sys.executable).parent / "persuasion"), "detect", str(tmp_path / "good.txt"),
               "--engine", "ray", "-o", str(tmp_path / "found")]

    result = subprocess.run(command, env=dict(os.environ, PYTHONPATH=str(tmp_path / "hide")), capture_output=True,
                            text=True, timeout=120)

    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and 'pip install -e ".[ray]"' in result.stderr and "ray" in result.stderr
    assert not (tmp_path / "found").exists()
