"""Documents to score, read from text files, directories of them, JSONL, CSV and Parquet rows, stdin, web pages
(.html and .htm files) or http(s) URLs.

Every text is the file decoded as `open(path, encoding="utf-8", newline="")` reads it: a leading
BOM and CRLF are kept, so span offsets index the file's characters exactly. A web page's text is its
article, extracted by trafilatura (persuasion/pages.py): offsets index that text, which the document
carries with the extractor's name. Input the user can fix
per document (bad bytes, a malformed row, a missing text field) becomes a `Document` with an
`error`; only a missing or empty path, or no input at all, stops the whole command. An empty or
whitespace-only text is a document like any other: the detector finds no spans in it.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from persuasion.errors import PersuasionError
from persuasion.limits import MAX_DOCUMENT_CHARACTERS, too_long
from persuasion.pages import (PageError, article_text, extractor_name, fetch_page, is_page, is_url, page_text,
                              require_extractor)

STDIN = "-"
STDIN_ID = "<stdin>"
UNPAIRED_SURROGATE = re.compile("[\ud800-\udfff]")
ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # what errors="surrogateescape" makes of a non-UTF-8 byte
JSON_TYPE_NAMES = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
                   bool: "a boolean", type(None): "null"}


class InputError(PersuasionError):
    """An INPUT argument cannot be used at all: the whole command stops."""


@dataclass(frozen=True)
class Document:
    id: str
    index: int  # position in the whole input order, across every INPUT
    source: str  # where it came from: a path, `path:line` for a JSONL or CSV row, or <stdin>
    text: str | None = None
    error: str | None = None  # why it cannot be scored, in one line; then text is None
    extractor: str | None = None  # for a web page: what took `text` out of it ('trafilatura 2.3.1')


@dataclass(frozen=True)
class Source:
    name: str  # a path as the user wrote it or as found under a directory they named, or "-"
    format: str  # "text", "jsonl", "csv", "parquet", "html", "url" or "stdin"


# A document found but not yet read: given its index, read it (so documents another shard
# scores are counted without reading their text).
PendingDocument = Callable[[int], Document]


def find_sources(inputs: list[str], pattern: str = "*.txt") -> list[Source]:
    """Expand INPUT arguments into files, in order; directories are searched recursively, sorted."""
    if not inputs:
        raise InputError("no input given: name text, JSONL, CSV or Parquet files, directories, or - for stdin")
    sources = []
    for name in inputs:
        if not name:  # Path("") is the current folder: `detect "$UNSET"` must not score it all
            raise InputError("an empty INPUT (an unset shell variable?): name a file, a directory, or - for stdin")
        if name == STDIN:
            sources.append(Source(STDIN, "stdin"))
            continue
        if is_url(name):
            sources.append(Source(name, "url"))
            continue
        path = Path(name)
        if path.is_dir():
            matches = sorted(match for match in path.rglob(pattern) if match.is_file())
            sources.extend(Source(str(match), format_of(match)) for match in matches)
        elif path.exists():
            sources.append(Source(name, format_of(path)))
        else:
            raise InputError(f"{name}: no such file or directory")
    if not sources:
        raise InputError(f"no input files: no file under {', '.join(inputs)} matches {pattern!r}; "
                         f"choose another with --pattern")
    page = next((source for source in sources if source.format in ("html", "url")), None)
    if page is not None:
        require_extractor(page.name)  # before any work: one line naming the extra
    return sources


def format_of(path: Path) -> str:
    if is_page(path.name):
        return "html"
    return {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}.get(path.suffix.lower(), "text")


def read_documents(sources: list[Source], text_field: str = "text", id_field: str = "id",
                   wanted: Callable[[int], bool] | None = None, start: int = 0) -> Iterator[Document]:
    """Documents in input order, the first numbered `start`; only those whose index is `wanted` are read."""
    index = start
    for source in sources:
        for pending in pending_documents(source, text_field, id_field):
            if wanted is None or wanted(index):
                yield pending(index)
            index += 1


def count_documents(sources: list[Source], text_field: str = "text", id_field: str = "id") -> int:
    return sum(1 for source in sources for _ in pending_documents(source, text_field, id_field))


def pending_documents(source: Source, text_field: str, id_field: str) -> Iterator[PendingDocument]:
    if source.format == "stdin":
        yield read_stdin
    elif source.format == "jsonl":
        yield from pending_jsonl_rows(source.name, text_field, id_field)
    elif source.format == "csv":
        yield from pending_csv_rows(source.name, text_field, id_field)
    elif source.format == "parquet":
        yield from pending_parquet_rows(source.name, text_field, id_field)
    elif source.format == "html":
        yield partial(read_page_file, source.name)
    elif source.format == "url":
        yield partial(read_url, source.name)
    else:
        yield partial(read_text_file, source.name)


def text_problem(text: str) -> str | None:
    """Why a decoded text cannot be scored, or None; an empty text can (it has no spans)."""
    problem = too_long(len(text))
    if problem:
        return problem
    if "\x00" in text:
        return f"NUL character at character {text.index(chr(0))}: binary data, not text"
    surrogate = UNPAIRED_SURROGATE.search(text)
    if surrogate:
        return f"unpaired surrogate {ascii(surrogate.group())} at character {surrogate.start()}: not valid text"
    return None


def decode_text(data: bytes) -> tuple[str | None, str | None]:
    """(text, None) or (None, why not): UTF-8, every character kept, no newline translation."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return None, "UTF-16 or UTF-32 byte-order mark: convert the file to UTF-8"
    nul = data.find(b"\x00")
    if nul >= 0:
        return None, f"binary file (NUL byte at byte offset {nul}), not text"
    try:
        text = data.decode("utf-8")  # not utf-8-sig: a BOM is character 0, as the offsets count it
    except UnicodeDecodeError as error:
        return None, f"not UTF-8: byte 0x{data[error.start]:02x} at byte offset {error.start}; convert it to UTF-8"
    problem = text_problem(text)
    return (None, problem) if problem else (text, None)


def read_text_file(name: str, index: int) -> Document:
    path = Path(name)
    try:
        size = path.stat().st_size
        if size > 4 * MAX_DOCUMENT_CHARACTERS:  # certainly over the limit: do not read it into memory
            return Document(name, index, name, error=f"{size:,} bytes is over the {MAX_DOCUMENT_CHARACTERS:,}-"
                                                     f"character limit of one document; split it")
        data = path.read_bytes()
    except OSError as error:
        return Document(name, index, name, error=f"cannot read: {error.strerror or error}")
    text, problem = decode_text(data)
    return Document(name, index, name, text=text, error=problem)


def read_page_file(name: str, index: int) -> Document:
    """A saved web page: the text of its article."""
    try:
        size = Path(name).stat().st_size
        if size > 4 * MAX_DOCUMENT_CHARACTERS:
            return Document(name, index, name, error=f"{size:,} bytes is too large for a web page; save the article "
                                                     "as text")
        return article_document(name, index, article_text(Path(name).read_bytes(), name))
    except OSError as error:
        return Document(name, index, name, error=f"cannot read: {error.strerror or error}")
    except PageError as error:
        return Document(name, index, name, error=str(error).removeprefix(f"{name}: "))


def read_url(url: str, index: int) -> Document:
    """An http(s) URL, fetched now (a timeout and a size limit; no network is an error record)."""
    try:
        page = fetch_page(url)
        text = page_text(page, url)
    except PageError as error:
        return Document(url, index, url, error=str(error).removeprefix(f"{url}: "))
    if not page.content_type.lower().startswith("text/plain"):
        return article_document(url, index, text)
    problem = text_problem(text)
    return Document(url, index, url, error=problem) if problem else Document(url, index, url, text=text)


def article_document(name: str, index: int, text: str) -> Document:
    problem = text_problem(text)
    if problem:
        return Document(name, index, name, error=problem)
    return Document(name, index, name, text=text, extractor=extractor_name())


def read_stdin(index: int) -> Document:
    """The whole of stdin is one document."""
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:
        return Document(STDIN_ID, index, STDIN_ID, error="stdin is closed or not readable")
    data = stream.read(4 * MAX_DOCUMENT_CHARACTERS + 1)
    if len(data) > 4 * MAX_DOCUMENT_CHARACTERS:
        return Document(STDIN_ID, index, STDIN_ID,
                        error=f"over the {MAX_DOCUMENT_CHARACTERS:,}-character limit of one document; split it")
    text, problem = decode_text(data)
    return Document(STDIN_ID, index, STDIN_ID, text=text, error=problem)


def pending_jsonl_rows(name: str, text_field: str, id_field: str) -> Iterator[PendingDocument]:
    """One document per non-blank line; the line is parsed only if its document is wanted."""
    try:
        file = open(name, "rb")
    except OSError as error:
        yield partial(file_error, name, f"cannot read: {error.strerror or error}")
        return
    with file:
        byte_offset = 0
        line_number = 0
        try:
            for line in file:
                line_number += 1
                line_offset, byte_offset = byte_offset, byte_offset + len(line)
                if line_number == 1 and line.startswith(codecs.BOM_UTF8):
                    line, line_offset = line[len(codecs.BOM_UTF8):], line_offset + len(codecs.BOM_UTF8)
                if line.strip():
                    yield partial(read_jsonl_row, line, line_offset, f"{name}:{line_number}", text_field, id_field)
        except OSError as error:
            yield partial(file_error, f"{name}:{line_number + 1}",
                          f"cannot read: {error.strerror or error}; the rest of the file is skipped")


def read_jsonl_row(line: bytes, byte_offset: int, source: str, text_field: str, id_field: str,
                   index: int) -> Document:
    def failed(problem: str, document_id: str = source) -> Document:
        return Document(document_id, index, source, error=problem)

    bad_bytes = None
    try:
        line_text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        bad_bytes = f"not UTF-8: byte 0x{line[error.start]:02x} at byte offset {byte_offset + error.start}"
        line_text = line.decode("utf-8", errors="surrogateescape")  # still parse it, to name the row by its id
    try:
        row = json.loads(line_text)
    except json.JSONDecodeError as error:
        return failed(bad_bytes or f"not JSON: {error.msg} at column {error.colno}")
    except RecursionError:
        return failed(bad_bytes or "not JSON this reader accepts: nested too deeply")
    if not isinstance(row, dict):
        return failed(f"{JSON_TYPE_NAMES.get(type(row), 'a value')}, not an object with a {text_field!r} field")
    document_id = row_id(row.get(id_field), source)
    if bad_bytes:
        return failed(bad_bytes, document_id)
    if text_field not in row:
        return failed(f"no {text_field!r} field; name the text field with --text-field", document_id)
    return row_document(document_id, index, source, row[text_field], text_field)


def row_document(document_id: str, index: int, source: str, text, text_field: str) -> Document:
    """The document of a row whose text field holds `text`, or its error record if that is not text."""
    if not isinstance(text, str):
        return Document(document_id, index, source,
                        error=f"{text_field!r} is {JSON_TYPE_NAMES.get(type(text), 'a value')}, not a string")
    problem = text_problem(text)
    if problem:
        return Document(document_id, index, source, error=problem)
    return Document(document_id, index, source, text=text)


def row_id(value, source: str) -> str:
    """The row's own id if it has a usable one, else its position, `path:line`."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return source
    value = str(value)
    if not value or UNPAIRED_SURROGATE.search(value):  # surrogates could not be written out as UTF-8
        return source
    return value


def pending_csv_rows(name: str, text_field: str, id_field: str) -> Iterator[PendingDocument]:
    """One document per row after the header; a row that breaks CSV parsing ends the file.

    The reader is strict, so a quote that is never closed is an error, not a last row holding the rest of the file.
    """
    # Documents up to the character limit must parse, so the text-too-long error can name them.
    csv.field_size_limit(max(csv.field_size_limit(), MAX_DOCUMENT_CHARACTERS + 1))
    try:
        # surrogateescape: a non-UTF-8 byte spoils its row only, not the rest of the file
        file = open(name, encoding="utf-8", errors="surrogateescape", newline="")
    except OSError as error:
        yield partial(file_error, name, f"cannot read: {error.strerror or error}")
        return
    with file:
        reader = csv.reader(file, strict=True)
        try:
            header = next(reader, None)
        except (csv.Error, OSError) as error:
            yield partial(file_error, name, f"cannot read the CSV header: {error}")
            return
        if header is None:
            return
        if header and header[0].startswith("\ufeff"):
            header[0] = header[0][1:]
        if text_field not in header:
            yield partial(file_error, name, f"no {text_field!r} column (columns: {', '.join(map(repr, header))}); "
                                            f"name the text column with --text-field")
            return
        while True:
            line_number = reader.line_num + 1
            try:
                row = next(reader, None)
            except (csv.Error, OSError) as error:
                problem = str(error)
                if "end of data" in problem:  # csv's words for end of file inside a quoted field
                    problem = f'the quote opened on line {line_number} is never closed (write a quote in a field as "")'
                yield partial(file_error, f"{name}:{line_number}",
                              f"malformed CSV: {problem}; the rest of the file is skipped")
                return
            if row is None:
                return
            if row:  # csv yields [] for a blank line
                yield partial(read_csv_row, header, row, f"{name}:{line_number}", text_field, id_field)


def read_csv_row(header: list[str], row: list[str], source: str, text_field: str, id_field: str,
                 index: int) -> Document:
    values = dict(zip(header, row))
    document_id = row_id(values.get(id_field), source)
    if ESCAPED_BYTE.search(document_id):
        document_id = source
    if len(row) != len(header):
        return Document(document_id, index, source,
                        error=f"malformed CSV row: {len(row)} fields where the header has {len(header)}")
    text = values[text_field]
    bad_byte = ESCAPED_BYTE.search(text)
    if bad_byte:
        byte = ord(bad_byte.group()) - 0xDC00
        return Document(document_id, index, source,
                        error=f"not UTF-8: byte 0x{byte:02x} in the {text_field!r} field; convert the file to UTF-8")
    problem = text_problem(text)
    if problem:
        return Document(document_id, index, source, error=problem)
    return Document(document_id, index, source, text=text)


def file_error(source: str, problem: str, index: int) -> Document:
    return Document(source, index, source, error=problem)


def pending_parquet_rows(name: str, text_field: str, id_field: str) -> Iterator[PendingDocument]:
    """One document per row, `path:N` for the Nth; the columns are read a row group at a time."""
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise InputError(f'{name}: reading Parquet needs pyarrow: pip install -e ".[ray]"') from None
    try:
        file = parquet.ParquetFile(name)
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        yield partial(file_error, name, f"cannot read as Parquet: {first_line(error)}")
        return
    columns = file.schema_arrow.names
    if text_field not in columns:
        yield partial(file_error, name, f"no {text_field!r} column (columns: {', '.join(map(repr, columns))}); "
                                        f"name the text column with --text-field")
        return
    wanted_columns = [text_field] + ([id_field] if id_field in columns and id_field != text_field else [])
    row_number = 0
    try:
        for group in range(file.num_row_groups):
            table = file.read_row_group(group, columns=wanted_columns)
            ids = table.column(id_field).to_pylist() if id_field in wanted_columns else [None] * table.num_rows
            for text, value in zip(table.column(text_field).to_pylist(), ids):
                row_number += 1
                source = f"{name}:{row_number}"
                yield partial(row_document, row_id(value, source), source=source, text=text, text_field=text_field)
    except (OSError, ValueError) as error:
        yield partial(file_error, f"{name}:{row_number + 1}",
                      f"cannot read: {first_line(error)}; the rest of the file is skipped")


def first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
