"""Readers for the PTC (SemEval-2020 Task 11) layout and the SemEval-2021 Task 6 meme files.

Offsets index the article exactly as `open(path, encoding="utf-8", newline="")` reads it:
a leading BOM is character 0 and CRLF counts as two characters, as the gold files count them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from persuasion.errors import PersuasionError
from persuasion.taxonomy import MEME_TO_PTC, TECHNIQUES

ARTICLE_NAME = re.compile(r"^article(\d+)\.txt$")


class CorpusError(PersuasionError):
    """A corpus file is missing or malformed; the message names the file (and line)."""


@dataclass(frozen=True)
class GoldSpan:
    start: int
    end: int
    technique: str | None  # None for the spans of a TC template, whose label is "?"


@dataclass
class Article:
    article_id: str
    text: str
    spans: list[GoldSpan] = field(default_factory=list)  # technique spans (flc-tc), or template spans
    si_spans: list[tuple[int, int]] | None = None  # task-si gold, None when the split has none
    has_gold: bool = False  # True when `spans` carry gold techniques

    def to_record(self) -> dict:
        return {
            "article_id": self.article_id,
            "text": self.text,
            "spans": [{"start": s.start, "end": s.end, "technique": s.technique or "?"} for s in self.spans],
            "si_spans": [{"start": a, "end": b} for a, b in (self.si_spans or [])],
            "has_gold": self.has_gold,
        }


def read_text_exact(path: Path) -> str:
    """Read a text file with every character kept (BOM and CRLF included)."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except UnicodeDecodeError as error:
        raise CorpusError(f"{path}: not valid UTF-8 ({error.reason} at byte {error.start})") from None


def _parse_int(value: str, path: Path, line_number: int, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise CorpusError(f"{path}:{line_number}: {what} {value!r} is not an integer") from None


def _check_span(start: int, end: int, text_length: int, path: Path, line_number: int) -> None:
    if not 0 <= start < end <= text_length:
        raise CorpusError(
            f"{path}:{line_number}: span {start}-{end} lies outside its article ({text_length} characters)"
        )


def _read_label_lines(path: Path, columns: int) -> list[tuple[int, list[str]]]:
    rows = []
    for line_number, line in enumerate(read_text_exact(path).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) != columns:
            raise CorpusError(f"{path}:{line_number}: expected {columns} tab-separated fields, got {len(fields)}")
        rows.append((line_number, fields))
    return rows


def _read_technique_labels(path: Path, article_id: str, text_length: int, allow_unknown: bool) -> list[GoldSpan]:
    spans = []
    for line_number, (label_id, technique, start_text, end_text) in _read_label_lines(path, 4):
        if label_id != article_id:
            raise CorpusError(f"{path}:{line_number}: article id {label_id!r} does not match {article_id!r}")
        if technique == "?" and allow_unknown:
            technique_name = None
        elif technique in TECHNIQUES:
            technique_name = technique
        else:
            raise CorpusError(f"{path}:{line_number}: unknown technique {technique!r}")
        start = _parse_int(start_text, path, line_number, "start")
        end = _parse_int(end_text, path, line_number, "end")
        _check_span(start, end, text_length, path, line_number)
        spans.append(GoldSpan(start, end, technique_name))
    return spans


def _read_si_labels(path: Path, article_id: str, text_length: int) -> list[tuple[int, int]]:
    spans = []
    for line_number, (label_id, start_text, end_text) in _read_label_lines(path, 3):
        if label_id != article_id:
            raise CorpusError(f"{path}:{line_number}: article id {label_id!r} does not match {article_id!r}")
        start = _parse_int(start_text, path, line_number, "start")
        end = _parse_int(end_text, path, line_number, "end")
        _check_span(start, end, text_length, path, line_number)
        spans.append((start, end))
    return spans


def _read_tc_template(path: Path, texts: dict[str, str]) -> dict[str, list[GoldSpan]]:
    spans: dict[str, list[GoldSpan]] = {article_id: [] for article_id in texts}
    for line_number, (article_id, technique, start_text, end_text) in _read_label_lines(path, 4):
        if article_id not in texts:
            raise CorpusError(f"{path}:{line_number}: article {article_id!r} has no text in the articles folder")
        start = _parse_int(start_text, path, line_number, "start")
        end = _parse_int(end_text, path, line_number, "end")
        _check_span(start, end, len(texts[article_id]), path, line_number)
        spans[article_id].append(GoldSpan(start, end, technique if technique in TECHNIQUES else None))
    return spans


def read_ptc_articles(data_dir: str | Path, split: str) -> list[Article]:
    """Read one split of the PTC layout: `<split>-articles/` plus whatever gold or template exists."""
    data_dir = Path(data_dir)
    articles_dir = data_dir / f"{split}-articles"
    if not articles_dir.is_dir():
        raise CorpusError(f"{articles_dir}: no such folder; expected the PTC layout with '{split}-articles/'")
    texts: dict[str, str] = {}
    for path in sorted(articles_dir.iterdir()):
        match = ARTICLE_NAME.match(path.name)
        if match:
            texts[match.group(1)] = read_text_exact(path)
    if not texts:
        raise CorpusError(f"{articles_dir}: no article<ID>.txt files")

    flc_dir = data_dir / f"{split}-labels-task-flc-tc"
    si_dir = data_dir / f"{split}-labels-task-si"
    template = data_dir / f"{split}-task-tc-template.out"
    template_spans = _read_tc_template(template, texts) if template.is_file() and not flc_dir.is_dir() else None

    articles = []
    for article_id, text in texts.items():
        article = Article(article_id, text)
        if flc_dir.is_dir():
            label_path = flc_dir / f"article{article_id}.task-flc-tc.labels"
            if not label_path.is_file():
                raise CorpusError(f"{label_path}: missing technique labels for article {article_id}")
            article.spans = _read_technique_labels(label_path, article_id, len(text), allow_unknown=False)
            article.has_gold = True
        elif template_spans is not None:
            article.spans = template_spans[article_id]
        if si_dir.is_dir():
            si_path = si_dir / f"article{article_id}.task-si.labels"
            if not si_path.is_file():
                raise CorpusError(f"{si_path}: missing span labels for article {article_id}")
            article.si_spans = _read_si_labels(si_path, article_id, len(text))
        articles.append(article)
    return articles


def read_ptc(data_dir: str | Path, splits: tuple[str, ...] = ("train", "dev")):
    """The PTC splits as a `datasets.DatasetDict` of article records (needs the [train] extra)."""
    from datasets import Dataset, DatasetDict

    return DatasetDict(
        {split: Dataset.from_list([a.to_record() for a in read_ptc_articles(data_dir, split)]) for split in splits}
    )


def read_meme_articles(path: str | Path) -> list[Article]:
    """Read a SemEval-2021 Task 6 subtask-2 JSON file; labels map onto the 14 PTC techniques.

    Meme labels without a PTC counterpart (see `MEME_TO_PTC`) are dropped from `spans`.
    """
    path = Path(path)
    try:
        records = json.loads(read_text_exact(path))
    except json.JSONDecodeError as error:
        raise CorpusError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    articles = []
    for index, record in enumerate(records):
        text = record["text"]
        spans = []
        for label in record.get("labels", []):
            if not isinstance(label, dict):
                raise CorpusError(f"{path}: record {index} has subtask-1 labels; use the task2 file for spans")
            if label["technique"] not in MEME_TO_PTC:
                raise CorpusError(f"{path}: record {index}: unknown meme technique {label['technique']!r}")
            technique = MEME_TO_PTC[label["technique"]]
            if technique is not None:
                _check_span(label["start"], label["end"], len(text), path, index + 1)
                spans.append(GoldSpan(label["start"], label["end"], technique))
        articles.append(Article(str(record["id"]), text, spans, has_gold=True))
    return articles


def read_memes(data_dir: str | Path):
    """The meme subtask-2 files (`training_set_task2.txt`, `dev_set_task2.txt`) as a DatasetDict."""
    from datasets import Dataset, DatasetDict

    data_dir = Path(data_dir)
    files = {"train": "training_set_task2.txt", "dev": "dev_set_task2.txt"}
    return DatasetDict(
        {
            split: Dataset.from_list([a.to_record() for a in read_meme_articles(data_dir / name)])
            for split, name in files.items()
        }
    )
