"""`persuasion detect`: score many documents and write one record per document, exactly once.

Records are appended in input order and flushed one at a time, so after a crash `--resume` reads
what was written, checks it against the first inputs, drops a half-written tail and scores only
the rest. `--shard K/N` scores the documents whose index % N == K - 1; every record carries its
index, so shard outputs merged by index equal an unsharded run. `--engine ray` hands the same
documents, scorer and records (persuasion/records.py) to Ray Data instead (persuasion/distributed.py).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from persuasion.errors import PersuasionError, exit_status_help
from persuasion.extras import require_ray_extra
from persuasion.inputs import Document, Source, count_documents, find_sources, read_documents
from persuasion.records import Scored, exit_status, plural, record_of, score_documents
from persuasion.result import DetectionResult

FORMATS = ("jsonl", "csv", "html", "text", "parquet")  # parquet: --engine ray only
FORMAT_BY_SUFFIX = {".jsonl": "jsonl", ".csv": "csv", ".html": "html", ".htm": "html", ".txt": "text"}
FEW_DOCUMENTS = 20  # below this a progress bar is noise
RAY_OPTIONS = ("--address", "--actors", "--cpus-per-actor", "--gpus-per-actor", "--records-per-file")


def add_arguments(parser) -> None:
    parser.formatter_class, parser.epilog = argparse.RawDescriptionHelpFormatter, exit_status_help()
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="text files, directories of them (searched recursively), .jsonl or .csv files "
                             "(one document per row), or - for stdin (one document)")
    parser.add_argument("--output", "-o", metavar="FILE", help="where to write the records (default: stdout)")
    parser.add_argument("--format", choices=FORMATS,
                        help="record format (default: from the --output suffix: .jsonl, .csv, .html, .htm or .txt; "
                             "jsonl for stdout or no suffix)")
    parser.add_argument("--resume", action="store_true",
                        help="finish an interrupted run: keep the records already in --output, score the rest")
    parser.add_argument("--text-field", default="text", help="JSONL field / CSV column holding the text")
    parser.add_argument("--id-field", default="id",
                        help="JSONL field / CSV column holding the document id (default: id; else file:line)")
    parser.add_argument("--pattern", default="*.txt", help="which files to take from directories (default: *.txt)")
    parser.add_argument("--model", metavar="NAME|PATH",
                        help="a shipped model, default (the most accurate) or fast, or a checkpoint folder (default: default)")
    parser.add_argument("--precision", default="auto", metavar="P",
                        help="what the model computes in: auto (bf16 where the hardware has it, else fp32), fp32, "
                             "bf16 or int8 (default: auto)")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per forward pass (default: 32)")
    parser.add_argument("--min-score", type=float, metavar="S",
                        help="leave out spans scoring below S, from 0 to 1: a span's score is about the chance that "
                             "it overlaps a span annotators marked with its technique (default: the model's, 0, "
                             "every span)")
    parser.add_argument("--shard", metavar="K/N",
                        help="score only documents whose index %% N == K-1 (K from 1), to split a job by hand "
                             "without Ray; under `accelerate launch` RANK and WORLD_SIZE choose it and FILE gets "
                             "the suffix .rank{RANK}")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary on stderr")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local: this process (default); ray: an actor pool on Ray Data, on this machine or a "
                             "cluster, writing jsonl or parquet shards into the --output folder (the [ray] extra)")
    ray_options = parser.add_argument_group("--engine ray")
    ray_options.add_argument("--address", metavar="ADDRESS",
                             help="join the Ray cluster there (auto: the one `ray start` started on this machine); "
                                  "default: start a local Ray instance for this run")
    ray_options.add_argument("--actors", type=int, metavar="N",
                             help="detectors scoring at once, each loaded once (default: as many as the cluster's "
                                  "CPUs, or GPUs, allow)")
    ray_options.add_argument("--cpus-per-actor", type=float, metavar="C",
                             help="CPUs each actor reserves, and its torch threads (default: 1)")
    ray_options.add_argument("--gpus-per-actor", type=float, metavar="G", help="GPUs each actor reserves (default: 0)")
    ray_options.add_argument("--records-per-file", type=int, metavar="N",
                             help="records in each output shard, at most (default: 1000)")


@dataclass(frozen=True)
class Shard:
    number: int  # from 1
    count: int

    def holds(self, index: int) -> bool:
        return index % self.count == self.number - 1

    def size(self, total: int) -> int:
        return len(range(self.number - 1, total, self.count))


EVERYTHING = Shard(1, 1)


def parse_shard(value: str) -> Shard:
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise PersuasionError(f"--shard {value!r}: expected K/N with 1 <= K <= N, for example 2/4")
    return Shard(int(match.group(1)), int(match.group(2)))


def launcher_rank() -> tuple[int, int] | None:
    """(RANK, WORLD_SIZE) when started by `accelerate launch` or torchrun with several processes."""
    try:
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    except (KeyError, ValueError):
        return None
    return (rank, world_size) if world_size > 1 and 0 <= rank < world_size else None


# Record formats. Each renders one document as a chunk of text ending in a newline, and can read
# an existing output back into the keys of its complete documents, for --resume.


class ResumeError(PersuasionError):
    """The existing output cannot be continued."""


class JsonlRecords:
    """One JSON object per line: {id, index, source, spans, sentences, summary} or {id, index, source, error};
    a web page's record also has the `text` its offsets index and the `extractor` that took it out of the page."""

    header = ""

    def render(self, document: Document, result: DetectionResult | None) -> str:
        return json.dumps(record_of(document, result), ensure_ascii=False) + "\n"

    def key(self, document: Document):
        return document.id, document.index

    def scan(self, path: Path) -> tuple[list, int]:
        """Keys of the complete records and the bytes they fill; what follows is a torn write."""
        keys, length = [], 0
        with open(path, "rb") as file:
            for number, line in enumerate(file, 1):
                if not line.endswith(b"\n"):
                    break
                try:
                    record = json.loads(line)
                    keys.append((record["id"], record["index"]))
                except (ValueError, KeyError, TypeError, IndexError):
                    raise ResumeError(f"{path} line {number} is not a record of `persuasion detect --format jsonl`; "
                                      f"cannot resume it") from None
                length += len(line)
        return keys, length


class CsvRecords:
    """One row per span; a document without spans, or with an error, is one row with empty span columns."""

    columns = ["id", "index", "start", "end", "technique", "score", "text", "error"]
    header = ",".join(columns) + "\r\n"

    def render(self, document: Document, result: DetectionResult | None) -> str:
        start = [document.id, document.index]
        if result is None:
            rows = [start + ["", "", "", "", "", document.error]]
        elif not result.spans:
            rows = [start + ["", "", "", "", "", ""]]
        else:
            rows = [start + [span.start, span.end, span.technique, span.score, span.text, ""] for span in result.spans]
        buffer = io.StringIO()
        csv.writer(buffer).writerows(rows)  # "\r\n" rows: the writer then quotes any \r or \n in a field
        return buffer.getvalue()

    def key(self, document: Document):
        return document.id, document.index

    def scan(self, path: Path) -> tuple[list, int]:
        """Keys of the documents before the last one, and the byte where the last one starts.

        A document is several rows and a kill can land between them, so the last document found
        is always dropped and scored again; so is everything from a row that does not parse.
        """
        header = self.header.encode()
        with open(path, "rb") as file:
            head = file.read(len(header))
            if len(head) < len(header) and header.startswith(head):
                return [], 0  # a torn header: write it again
            if head != header:
                raise ResumeError(f"{path} does not start with the header `persuasion detect --format csv` "
                                  f"writes; cannot resume it")
            consumed = len(header)

            def complete_lines() -> Iterator[str]:
                nonlocal consumed
                for line in file:
                    if not line.endswith(b"\n"):
                        return
                    consumed += len(line)
                    yield line.decode("utf-8", errors="surrogateescape")

            document_starts: list[tuple[tuple[str, int], int]] = []  # (key, byte where its rows start)
            row_start = consumed
            try:
                for row in csv.reader(complete_lines()):
                    key = (row[0], int(row[1]))
                    if not document_starts or document_starts[-1][0] != key:
                        document_starts.append((key, row_start))
                    row_start = consumed
            except (csv.Error, ValueError, IndexError):
                pass  # a torn or damaged row: it and everything after it are scored again
        if not document_starts:
            return [], len(header)
        *kept, (_, last_start) = document_starts
        return [key for key, _ in kept], last_start


class TextRecords:
    """A block per document: a `[index] id` line, then one indented line per span, then a blank line."""

    header = ""

    def render(self, document: Document, result: DetectionResult | None) -> str:
        lines = [self.key(document)]
        if result is None:
            lines.append(f"  error: {printable(document.error)}")
        if result is not None and document.extractor:
            lines.append(f"  article text: {len(result.text):,} characters extracted by {document.extractor}; "
                         f"offsets index it")
        if result is not None and not result.spans:
            lines.append("  no techniques found")
        for span in result.spans if result else []:
            lines.append(f"  {span.start}-{span.end}  {span.technique}  {span.score:.3f}  "
                         f"{json.dumps(span.text, ensure_ascii=False)}")
        return "\n".join(lines) + "\n\n"

    def key(self, document: Document) -> str:
        line = f"[{document.index}] {printable(document.id)}"
        return line + (f"  ({printable(document.source)})" if document.source != document.id else "")

    def scan(self, path: Path) -> tuple[list, int]:
        """Header lines of the complete blocks and the bytes they fill; what follows is a torn write."""
        keys, length, block = [], 0, []
        with open(path, "rb") as file:
            for line in file:
                if not line.endswith(b"\n"):
                    break
                if line != b"\n":
                    block.append(line)
                    continue
                key = block[0].decode("utf-8", errors="surrogateescape").rstrip("\n") if block else ""
                if not re.match(r"\[\d+\] ", key):
                    raise ResumeError(f"{path} block {len(keys) + 1} is not a record of "
                                      f"`persuasion detect --format text`; cannot resume it")
                keys.append(key)
                length += sum(map(len, block)) + 1
                block = []
        return keys, length


def printable(value: str) -> str:
    """Itself, or JSON-quoted when it holds a line break or other control character."""
    return value if value.isprintable() else json.dumps(value, ensure_ascii=False)


RECORDS = {"jsonl": JsonlRecords(), "csv": CsvRecords(), "text": TextRecords()}


# The command


def run(args) -> int:
    if args.batch_size < 1:
        raise PersuasionError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.min_score is not None and not 0.0 <= args.min_score <= 1.0:
        raise PersuasionError(f"--min-score {args.min_score}: give a score from 0 to 1")
    if args.engine == "ray":
        require_ray_extra()
        from persuasion import distributed  # imports Ray, an optional extra and slow to load: only for this engine

        return distributed.run(args)
    used = [option for option in RAY_OPTIONS if getattr(args, option.lstrip("-").replace("-", "_")) is not None]
    if used or args.format == "parquet":
        raise PersuasionError(f"{(used or ['--format parquet'])[0]} needs --engine ray")
    output, output_format, shard, device = destination(args)
    # `detect docs/ -o docs/found.txt` must not read its own output as an input when resumed
    sources = [source for source in find_sources(args.inputs, args.pattern) if not is_output(source, output)]
    records = RECORDS.get(output_format)  # None for html, which is written whole at the end
    done, keep_bytes = resume_point(output, records, args.resume)

    documents = read_documents(sources, args.text_field, args.id_field, wanted=shard.holds)
    skip_resumed(documents, done, records, output)
    detector = load_detector(args.model, device, args.precision)
    if args.min_score is not None:
        detector = detector.with_min_score(args.min_score)
    with progress_bar(args, sources, shard, len(done)) as progress:
        long_document = None if args.quiet else LongDocumentProgress()
        scored = counted(score_documents(detector, documents, args.batch_size, long_document), progress)
        if records is None:
            written, failed = write_html_report(scored, output, report_title(args.inputs))
        else:
            if keep_bytes is not None:
                os.truncate(output, keep_bytes)  # drop a torn tail (and, for csv, the last document)
            written, failed = append_records(scored, records, output)
    if not args.quiet:
        kept = f", {len(done)} kept from before" if done else ""
        print(f"persuasion detect: {plural(written, 'document')} written to {output or 'stdout'} "
              f"({failed} with an error{kept})", file=sys.stderr)
    return exit_status(written, failed)


def destination(args) -> tuple[Path | None, str, Shard, str | None]:
    """(output file or None for stdout, record format, this process's shard, device or None)."""
    output = Path(args.output) if args.output else None
    output_format = args.format or output_format_of(output)
    shard, device, launched = EVERYTHING, None, launcher_rank()
    if args.shard:
        shard = parse_shard(args.shard)
    elif launched:
        rank, world_size = launched
        if output is None:
            raise PersuasionError(f"{world_size} processes cannot share stdout: give --output FILE "
                                  f"(each writes FILE.rank<RANK>)")
        shard, output = Shard(rank + 1, world_size), output.with_name(f"{output.name}.rank{rank}")
        device = launcher_device()
    if args.resume and output is None:
        raise PersuasionError("--resume needs --output FILE: there is nothing to resume on stdout")
    if args.resume and output_format == "html":
        raise PersuasionError("--resume cannot continue an HTML report (it is written once, at the end); "
                              "use --format jsonl for long runs")
    if output is not None and not output.parent.is_dir():
        raise PersuasionError(f"--output {output}: directory {output.parent} does not exist")
    return output, output_format, shard, device


def output_format_of(output: Path | None) -> str:
    """The record format an --output name asks for; an extension it does not know is an error, not jsonl."""
    if output is None or not output.suffix:
        return "jsonl"
    if output.suffix.lower() not in FORMAT_BY_SUFFIX:
        raise PersuasionError(f"--output {output}: unknown extension {output.suffix}; name the file .jsonl, .csv, "
                              f".html or .txt, or choose the format with --format")
    return FORMAT_BY_SUFFIX[output.suffix.lower()]


def resume_point(output: Path | None, records, resume: bool) -> tuple[list, int | None]:
    """Keys of the records already written, and the length to cut the file to (None: leave it)."""
    if output is None or not output.is_file() or output.stat().st_size == 0:
        return [], None
    if not resume:
        raise PersuasionError(f"{output} already exists; pass --resume to finish it, or remove it to start over")
    return records.scan(output)


def is_output(source: Source, path: Path | None) -> bool:
    return path is not None and source.format != "stdin" and Path(source.name).resolve() == path.resolve()


def report_title(inputs: list[str]) -> str:
    named = ", ".join(inputs[:3]) + (f" and {len(inputs) - 3} more" if len(inputs) > 3 else "")
    return f"Persuasion techniques in {named}"


def skip_resumed(documents: Iterator[Document], done: list, records, output: Path) -> None:
    """Consume the documents already in the output, checking they are the same ones."""
    for number, key in enumerate(done, 1):
        document = next(documents, None)
        if document is None:
            raise ResumeError(f"{output} holds {len(done)} records but the input has only {number - 1} documents; "
                              f"the input changed, so remove {output} to start over")
        if records.key(document) != key:
            raise ResumeError(f"{output} record {number} is {key!r} but the input gives {records.key(document)!r}; "
                              f"the input changed, so remove {output} to start over")


def launcher_device() -> str | None:
    """One GPU per process under a launcher; None lets the detector choose."""
    import torch

    local_rank = os.environ.get("LOCAL_RANK", "")
    return f"cuda:{local_rank}" if local_rank.isdigit() and torch.cuda.is_available() else None


def load_detector(model: str | None, device: str | None, precision: str):
    from persuasion.model.detector import Detector  # torch loads slowly: not for input errors or --help

    return Detector.load(model, device=device, precision=precision)


def append_records(scored: Iterable[Scored], records, output: Path | None) -> tuple[int, int]:
    """Write each record as soon as it is scored and flush it, so a kill loses at most a torn tail."""
    file = open(output, "a", encoding="utf-8", newline="") if output is not None else sys.stdout
    written = failed = 0
    try:
        if records.header and (output is None or file.tell() == 0):
            file.write(records.header)
        for document, result in scored:
            file.write(records.render(document, result))
            file.flush()
            written, failed = written + 1, failed + (result is None)
        if output is not None:
            os.fsync(file.fileno())
    except BrokenPipeError:
        if output is not None:
            raise
        # Whoever read stdout has gone (`| head`): stop, and spare them Python's complaint at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        if output is not None:
            file.close()
    return written, failed


def write_html_report(scored: Iterable[Scored], output: Path | None, title: str) -> tuple[int, int]:
    """One self-contained page, written whole at the end (an HTML page cannot be appended to)."""
    from persuasion.highlight import render_report_html

    documents = [(document.id, result if result is not None else document.error) for document, result in scored]
    failed = sum(isinstance(outcome, str) for _, outcome in documents)  # a string is the error for that document
    page = render_report_html(documents, title)
    if output is None:
        sys.stdout.write(page)
        sys.stdout.flush()
    else:
        write_atomically(output, page)
    return len(documents), failed


def write_atomically(path: Path, content: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp makes it 0600; other outputs get the umask's mode
        with open(handle, "w", encoding="utf-8", newline="") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def progress_bar(args, sources: list[Source], shard: Shard, resumed: int):
    """A bar on an interactive stderr for jobs of more than a few documents."""
    if args.quiet or not sys.stderr.isatty():
        return nullcontext()
    total = shard.size(count_documents(sources, args.text_field, args.id_field)) - resumed
    if total < FEW_DOCUMENTS:
        return nullcontext()
    from tqdm import tqdm

    return tqdm(total=total, unit="doc", desc="detect", file=sys.stderr, dynamic_ncols=True)


class LongDocumentProgress:
    """A bar on stderr of the characters done in a document long enough to be read stretch by stretch."""

    def __init__(self):
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, unit="char", unit_scale=True, desc="long document", file=sys.stderr,
                            leave=False, dynamic_ncols=True, mininterval=1.0)
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.bar.close()
            self.bar = None


def counted(scored: Iterable, progress) -> Iterator:
    for item in scored:
        yield item
        if progress is not None:
            progress.update(1)
