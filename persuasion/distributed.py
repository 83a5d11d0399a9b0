"""Batch detection on Ray Data: `persuasion detect --engine ray`, and `detect_dataset` for a Ray pipeline.

Three streaming stages, the same on a laptop and on a cluster:

- read: each input file is read in a Ray task by the local engine's row readers (persuasion.inputs), so a
  malformed row is an error record with the same id and index as there. Ray's own JSON and CSV readers
  stop the whole job at one bad row; per-row input errors are the one part Ray Data does not do for us.
- score: an actor pool; each actor loads the detector once and scores blocks of documents with
  `score_documents`, as the local engine does, and `record_of` makes the records (persuasion/records.py). A
  killed actor is restarted by Ray and its block scored again.
- write: each group of records becomes one shard, `part-<smallest index>.jsonl` or `.parquet`, written under a
  temporary name and renamed, so a shard is complete or absent. A write task that Ray retries writes the same
  records under the same name, so a record is never written twice.

`--resume` after the driver itself was killed reads the indexes held by the complete shards, deletes the
temporary files a killed writer left, and scores only the documents not yet written.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from persuasion.extras import require_ray_extra

require_ray_extra()  # one line naming the extra, not an ImportError from deep inside

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as parquet  # noqa: E402
import ray  # noqa: E402

from persuasion.errors import PersuasionError  # noqa: E402
from persuasion.inputs import (Document, InputError, Source, count_documents, find_sources,  # noqa: E402
                               read_documents, row_document, row_id)
from persuasion.model.precision import check_precision  # noqa: E402
from persuasion.records import exit_status, plural, record_of, score_documents  # noqa: E402

OUTPUT_FORMATS = ("jsonl", "parquet")
JOB_FILE = "_job.json"  # what the shards are the records of (--resume checks it); "_": Parquet readers skip it
DOCUMENTS_PER_BLOCK = 16  # per actor call: small, so work spreads evenly and a killed actor loses little
CPUS_FOR_READING_AND_WRITING = 1  # kept free of actors: their tasks queue behind the actors otherwise
RECORDS_PER_SHARD = 1000  # --records-per-file

DOCUMENT_SCHEMA = pa.schema([("id", pa.string()), ("index", pa.int64()), ("source", pa.string()),
                             ("text", pa.string()), ("error", pa.string())])
SPAN = pa.struct([("start", pa.int64()), ("end", pa.int64()), ("text", pa.string()), ("technique", pa.string()),
                  ("score", pa.float64())])
SENTENCE = pa.struct([("start", pa.int64()), ("end", pa.int64()), ("score", pa.float64())])
TECHNIQUE_SUMMARY = pa.struct([("technique", pa.string()), ("count", pa.int64()), ("max_score", pa.float64())])
# The fields of records.record_of; a scored record has null error, an error record null spans, sentences, summary.
RECORD_SCHEMA = pa.schema([("id", pa.string()), ("index", pa.int64()), ("source", pa.string()),
                           ("spans", pa.list_(SPAN)), ("sentences", pa.list_(SENTENCE)),
                           ("summary", pa.list_(TECHNIQUE_SUMMARY)), ("error", pa.string())])


# Scoring: the actor pool


class DocumentScorer:
    """One actor of the pool: loads the detector once, then scores blocks of documents as the local engine does.

    load_options go to `Detector.load` as they are (for example device), so a new load option needs no
    change here.
    """

    def __init__(self, model: str | None = None, min_score: float | None = None, batch_size: int = 32,
                 threads: int | None = None, load_options: dict | None = None):
        import torch

        from persuasion.model.detector import Detector

        if threads:
            torch.set_num_threads(threads)
        detector = Detector.load(model, **(load_options or {}))
        self.detector = detector if min_score is None else detector.with_min_score(min_score)
        self.batch_size = batch_size

    def __call__(self, documents: pa.Table) -> pa.Table:
        scored = score_documents(self.detector, (Document(**row) for row in documents.to_pylist()), self.batch_size)
        return records_table([record_of(document, result) for document, result in scored])


def records_table(records: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(records, schema=RECORD_SCHEMA)


@dataclass(frozen=True)
class Scoring:
    """The detector each actor loads and the pool of actors that score."""

    model: str | None = None  # a shipped model's name or a checkpoint folder; None: the default model
    min_score: float | None = None
    batch_size: int = 32  # windows per forward pass
    actors: int | None = None  # None: as many as the cluster's CPUs (or GPUs) allow
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    load_options: dict = field(default_factory=dict)  # passed to Detector.load

    def records(self, documents: "ray.data.Dataset") -> "ray.data.Dataset":
        """The record of each document (columns of DOCUMENT_SCHEMA), in RECORD_SCHEMA."""
        threads = max(1, int(self.cpus_per_actor))
        return documents.map_batches(
            DocumentScorer, batch_format="pyarrow", batch_size=None, compute=self.pool(),
            num_cpus=self.cpus_per_actor, num_gpus=self.gpus_per_actor,
            fn_constructor_kwargs={"model": self.model, "min_score": self.min_score, "batch_size": self.batch_size,
                                   "threads": threads, "load_options": dict(self.load_options)})

    def pool(self) -> "ray.data.ActorPoolStrategy":
        """The actors, leaving a CPU to the reading and writing tasks: without one the job waits forever."""
        resources = ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 0) - CPUS_FOR_READING_AND_WRITING, resources.get("GPU", 0)
        most = int(cpus // self.cpus_per_actor)
        if self.gpus_per_actor:
            most = min(most, int(gpus // self.gpus_per_actor))
        wanted = self.actors or max(1, most)
        if wanted > most:
            raise PersuasionError(
                f"{plural(wanted, 'actor')} of {self.cpus_per_actor:g} CPU"
                + (f" and {self.gpus_per_actor:g} GPU" if self.gpus_per_actor else "")
                + f" do not fit in this Ray cluster's {cpus + CPUS_FOR_READING_AND_WRITING:g} CPUs"
                + (f" and {gpus:g} GPUs" if self.gpus_per_actor else "")
                + f", less {CPUS_FOR_READING_AND_WRITING} for reading and writing: lower --actors or "
                  f"--cpus-per-actor (0.5 is fine: an actor runs at least one thread)")
        if self.actors is not None:
            return ray.data.ActorPoolStrategy(size=self.actors)
        return ray.data.ActorPoolStrategy(min_size=1, max_size=most)


def detect_dataset(ds: "ray.data.Dataset", model: str | None = None, text_field: str = "text", id_field: str = "id",
                   min_score: float | None = None, batch_size: int = 32, actors: int | None = None,
                   cpus_per_actor: float = 1.0, gpus_per_actor: float = 0.0,
                   load_options: dict | None = None) -> "ray.data.Dataset":
    """A dataset of records, one per row of `ds`: id (from `id_field`), spans, sentences, summary, or an error.

    A row whose `text_field` is missing, not a string or over the length limit is an error record, as in
    `persuasion detect`; index and source are null, since a dataset has neither. Lazy, like any Ray dataset:
    write it (`.write_parquet(folder)`) or iterate it to run it.
    """
    if min_score is not None and not 0.0 <= min_score <= 1.0:
        raise PersuasionError(f"min_score {min_score}: give a score from 0 to 1")
    scoring = Scoring(model, min_score, batch_size, actors, cpus_per_actor, gpus_per_actor, dict(load_options or {}))
    documents = ds.map_batches(rows_as_documents, batch_format="pyarrow",
                               fn_kwargs={"text_field": text_field, "id_field": id_field})
    return scoring.records(in_blocks(documents))


def rows_as_documents(rows: pa.Table, text_field: str, id_field: str) -> pa.Table:
    ids = rows.column(id_field).to_pylist() if id_field in rows.column_names else [None] * rows.num_rows
    if text_field in rows.column_names:
        documents = [row_document(row_id(value, None), None, None, text, text_field)
                     for text, value in zip(rows.column(text_field).to_pylist(), ids)]
    else:
        problem = f"no {text_field!r} column (columns: {', '.join(map(repr, rows.column_names))})"
        documents = [Document(row_id(value, None), None, None, error=problem) for value in ids]
    return pa.Table.from_pylist([asdict(document) for document in documents], schema=DOCUMENT_SCHEMA)


# Reading the command's inputs


def documents_dataset(sources: list[Source], text_field: str, id_field: str, done: set[int]) -> "ray.data.Dataset":
    """The documents of `sources` not in `done`, numbered in input order as the local engine numbers them."""
    # Counted here: the index of a file's first document is the number before it (lines are counted, not parsed).
    files, first_index = [], 0
    for source in sources:
        files.append({"name": source.name, "format": source.format, "first_index": first_index})
        first_index += count_documents([source], text_field, id_field)
    read = ray.data.from_items(files).map_batches(read_file_documents, batch_size=1, batch_format="pyarrow",
                                                  fn_kwargs={"text_field": text_field, "id_field": id_field,
                                                             "done": done})
    return in_blocks(read)


def in_blocks(documents: "ray.data.Dataset") -> "ray.data.Dataset":
    """Blocks of exactly DOCUMENTS_PER_BLOCK documents, each an actor call: a file's documents spread over the
    pool (strict also keeps Ray Data from fusing the reading into the actors)."""
    return documents.repartition(target_num_rows_per_block=DOCUMENTS_PER_BLOCK, strict=True)


def read_file_documents(files: pa.Table, text_field: str, id_field: str, done: set[int]) -> Iterator[pa.Table]:
    for file in files.to_pylist():
        documents = read_documents([Source(file["name"], file["format"])], text_field, id_field,
                                   wanted=lambda index: index not in done, start=file["first_index"])
        block = []
        for document in documents:
            block.append(asdict(document))
            if len(block) >= DOCUMENTS_PER_BLOCK:
                yield pa.Table.from_pylist(block, schema=DOCUMENT_SCHEMA)
                block = []
        if block:
            yield pa.Table.from_pylist(block, schema=DOCUMENT_SCHEMA)


# Writing shards, exactly once


def shard_name(first_index: int, output_format: str) -> str:
    return f"part-{first_index:012d}.{output_format}"


def write_shard(records: pa.Table, folder: str, output_format: str) -> pa.Table:
    """Write one shard atomically; a retried task writes the same records under the same name, replacing it."""
    records = records.sort_by("index")
    final = Path(folder) / shard_name(records.column("index")[0].as_py(), output_format)
    temporary = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
    try:
        if output_format == "parquet":
            parquet.write_table(records, temporary)
        else:
            with open(temporary, "w", encoding="utf-8", newline="") as file:
                file.writelines(json_line(record) for record in records.to_pylist())
        with open(temporary, "rb") as file:
            os.fsync(file.fileno())
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)
    errors = records.num_rows - records.column("error").null_count
    return pa.table({"shard": [final.name], "records": [records.num_rows], "errors": [errors]})


def json_line(record: dict) -> str:
    """The line the local engine writes for this record: a null field of RECORD_SCHEMA is a field it leaves out."""
    return json.dumps({key: value for key, value in record.items() if value is not None}, ensure_ascii=False) + "\n"


def shards_in(folder: Path, output_format: str) -> list[Path]:
    return sorted(folder.glob(f"part-*.{output_format}"))


def written_indexes(folder: Path, output_format: str) -> set[int]:
    """The index of every record in the folder's complete shards."""
    done: set[int] = set()
    for shard in shards_in(folder, output_format):
        if output_format == "parquet":
            indexes = parquet.read_table(shard, columns=["index"]).column("index").to_pylist()
        else:
            with open(shard, encoding="utf-8") as file:
                indexes = [json.loads(line)["index"] for line in file]
        duplicates = done.intersection(indexes)
        if duplicates:
            raise PersuasionError(f"{shard} holds index {min(duplicates)}, already in another shard: "
                                  f"these are not the shards of one job; remove {folder} to start over")
        done.update(indexes)
    return done


# The command


@dataclass(frozen=True)
class Job:
    """What a folder of shards holds the records of: --resume refuses to mix the records of two jobs."""

    sources: list[str]
    text_field: str
    id_field: str
    output_format: str
    model: str | None
    min_score: float | None
    precision: str

    def save(self, folder: Path) -> None:
        temporary = folder / f".{JOB_FILE}.tmp"
        temporary.write_text(json.dumps(asdict(self), indent=1) + "\n", encoding="utf-8")
        os.replace(temporary, folder / JOB_FILE)

    def check_resumable(self, folder: Path) -> None:
        try:
            before = json.loads((folder / JOB_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise PersuasionError(f"{folder} has no readable {JOB_FILE}: it is not the output of "
                                  f"`persuasion detect --engine ray`; cannot resume it") from None
        changed = [name for name, value in asdict(self).items() if before.get(name) != value]
        if changed:
            raise PersuasionError(f"{folder} holds the records of another job (different {', '.join(changed)}); "
                                  f"run the same command again with --resume, or remove {folder} to start over")


def check_options(args) -> None:
    """One line for a choice the Ray engine cannot honour, before Ray starts."""
    if not args.output:
        raise PersuasionError("--engine ray needs --output FOLDER: it writes shards there, not to stdout")
    if args.shard:
        raise PersuasionError("--shard is the local engine's; --engine ray spreads the documents over its actors")
    if args.format and args.format not in OUTPUT_FORMATS:
        raise PersuasionError(f"--format {args.format}: --engine ray writes jsonl or parquet shards")
    if args.actors is not None and args.actors < 1:
        raise PersuasionError(f"--actors {args.actors}: must be at least 1")
    if args.cpus_per_actor is not None and args.cpus_per_actor <= 0:
        raise PersuasionError(f"--cpus-per-actor {args.cpus_per_actor}: must be more than 0")
    if args.gpus_per_actor is not None and args.gpus_per_actor < 0:
        raise PersuasionError(f"--gpus-per-actor {args.gpus_per_actor}: must be 0 or more")
    if args.records_per_file is not None and args.records_per_file < 1:
        raise PersuasionError(f"--records-per-file {args.records_per_file}: must be at least 1")


def output_folder(args, job: Job) -> tuple[Path, set[int]]:
    """The folder to write shards into, made if new, and the indexes already written there (for --resume)."""
    folder = Path(args.output)
    if folder.exists() and not folder.is_dir():
        raise PersuasionError(f"--output {folder}: is a file; --engine ray writes a folder of shards")
    if not folder.parent.is_dir():
        raise PersuasionError(f"--output {folder}: directory {folder.parent} does not exist")
    started = folder.is_dir() and any(folder.iterdir())
    if started and not args.resume:
        raise PersuasionError(f"{folder} is not empty; pass --resume to finish its job, or remove it to start over")
    if not started:
        folder.mkdir(exist_ok=True)
        job.save(folder)
        return folder, set()
    job.check_resumable(folder)
    for leftover in folder.glob(".part-*.tmp"):  # a writer killed before its rename
        leftover.unlink()
    return folder, written_indexes(folder, job.output_format)


@contextmanager
def ray_session(address: str | None, quiet: bool):
    """Ray for this run: the cluster at `address`, else a local instance reached at 127.0.0.1, shut down at
    the end. A process that already runs Ray (a test, a notebook) keeps its own."""
    if ray.is_initialized():
        yield
        return
    options = {"logging_level": logging.ERROR if quiet else logging.WARNING, "log_to_driver": not quiet}
    if address is None:
        options.update(include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        ray.init(address=address, **options)
    except (ConnectionError, RuntimeError) as error:
        raise PersuasionError(f"--address {address}: cannot join a Ray cluster there: "
                              f"{(str(error).strip().splitlines() or [''])[0]}") from None
    try:
        yield
    finally:
        ray.shutdown()


def run(args) -> int:
    check_options(args)
    output_format = args.format or "jsonl"
    sources = find_sources(args.inputs, args.pattern)
    if any(source.format == "stdin" for source in sources):
        raise InputError("- (stdin) cannot be read by Ray's workers: write it to a file first")
    model = args.model
    if model is not None:
        from persuasion.named_models import model_directory

        model_directory(model)  # an unknown model is one line here, not an error in every actor
    check_precision(args.precision)  # likewise
    job = Job([source.name for source in sources], args.text_field, args.id_field, output_format, model,
              args.min_score, args.precision)
    folder, done = output_folder(args, job)
    scoring = Scoring(model, args.min_score, args.batch_size, args.actors, args.cpus_per_actor or 1.0,
                      args.gpus_per_actor or 0.0, {"precision": args.precision})
    written = failed = 0
    with ray_session(args.address, args.quiet):
        if args.quiet:
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = context.print_on_execution_start = False
            logging.getLogger("ray.data").setLevel(logging.ERROR)
        records = scoring.records(documents_dataset(sources, args.text_field, args.id_field, done))
        shards = records.map_batches(write_shard, batch_size=args.records_per_file or RECORDS_PER_SHARD,
                                     batch_format="pyarrow",
                                     fn_kwargs={"folder": str(folder.resolve()), "output_format": output_format})
        for shard in shards.iter_rows():
            written, failed = written + shard["records"], failed + shard["errors"]
    if not args.quiet:
        kept = f", {len(done)} kept from before" if done else ""
        print(f"persuasion detect: {plural(written, 'document')} written to {folder} "
              f"({failed} with an error{kept})", file=sys.stderr)
    return exit_status(written, failed)
