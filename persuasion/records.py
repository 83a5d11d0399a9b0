"""The records of `persuasion detect`, made alike by both engines: this process (persuasion/batch.py) and Ray Data
(persuasion/distributed.py).

Documents are scored in input order, a document the model fails on costing the others nothing; each becomes one
record (`record_of`); the run exits with the status of what it wrote. How records are written (jsonl, csv, text
or an HTML report here, jsonl or parquet shards on Ray) is each engine's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace

from persuasion.errors import ExitStatus
from persuasion.inputs import Document
from persuasion.result import DetectionResult

Scored = tuple[Document, DetectionResult | None]  # the result is None for a document with an error


def record_of(document: Document, result: DetectionResult | None) -> dict:
    """The record of one document, as both engines write it: its spans, sentences and summary, or its error."""
    record = {"id": document.id, "index": document.index, "source": document.source}
    if result is None:
        record["error"] = document.error
    else:
        if document.extractor:  # a web page: say which text the offsets index, and what took it out of the page
            record["extractor"] = document.extractor
        record.update(result.to_dict(include_text=document.extractor is not None))
    return record


def score_documents(detector, documents: Iterable[Document], batch_size: int, long_document=None
                    ) -> Iterator[Scored]:
    """(document, result) in input order; long_document(characters done, characters) hears how a long one goes."""
    group_size = max(1, batch_size // 4)  # as many documents as Detector.detect_many analyses together
    group: list[Document] = []
    for document in documents:
        group.append(document)
        if sum(member.error is None for member in group) >= group_size:
            yield from score_group(detector, group, batch_size, long_document)
            group = []
    yield from score_group(detector, group, batch_size, long_document)


def score_group(detector, group: list[Document], batch_size: int, long_document=None) -> Iterator[Scored]:
    scorable = [document for document in group if document.error is None]
    try:
        results = list(detector.detect_many([document.text for document in scorable], batch_size, long_document))
    except Exception:  # one document the model cannot take must not cost the others: score each alone
        results = [detect_alone(detector, document.text) for document in scorable]
    outcomes = iter(results)
    for document in group:
        result = next(outcomes) if document.error is None else None
        if isinstance(result, str):
            yield replace(document, text=None, error=result), None
        else:
            yield document, result


def detect_alone(detector, text: str) -> DetectionResult | str:
    try:
        return detector.detect(text)
    except Exception as error:
        detail = (str(error).strip().splitlines() or [""])[0]
        return f"the model failed on this document: {type(error).__name__}" + (f": {detail}" if detail else "")


def exit_status(written: int, failed: int) -> ExitStatus:
    """Of the documents this run wrote: all scored, some with an error record, or every one with an error record."""
    if not failed:
        return ExitStatus.OK
    return ExitStatus.NONE_SCORED if failed == written else ExitStatus.SOME_FAILED


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
