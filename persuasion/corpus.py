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

    def si_gold(self) -> list[tuple[int, int]]:
        """The span identification gold: the task-si spans where the split has them, else the technique spans."""
        return list(self.si_spans) if self.si_spans is not None else [(s.start, s.end) for s in self.spans]

    def technique_gold(self) -> list[tuple[int, int, str]]:
        """The technique classification gold: every technique span occurrence, in file order."""
        return [(s.start, s.end, s.technique) for s in self.spans]

    def to_record(self) -> dict:
        """This article as a row of `load_corpus`'s datasets (see CORPUS_FEATURES)."""
        return {
            "article_id": self.article_id,
            "text": self.text,
            "spans": [{"start": s.start, "end": s.end, "technique": s.technique or "?"} for s in self.spans],
            "si_spans": None if self.si_spans is None else [{"start": a, "end": b} for a, b in self.si_spans],
            "has_gold": self.has_gold,
        }

    @classmethod
    def from_record(cls, record: dict) -> "Article":
        """The article a `load_corpus` row holds; `Article.from_record(a.to_record()) == a`."""
        spans = [GoldSpan(s["start"], s["end"], None if s["technique"] == "?" else s["technique"])
                 for s in record["spans"]]
        si_spans = None if record["si_spans"] is None else [(s["start"], s["end"]) for s in record["si_spans"]]
        return cls(record["article_id"], record["text"], spans, si_spans, record["has_gold"])


def span_gold(articles: list[Article]) -> dict[str, list[tuple[int, int]]]:
    """SI gold of the articles that have any: the task-si spans as the files list them, else the technique
    spans; the SI measure merges them as the official scorer merges its gold file."""
    return {a.article_id: a.si_gold() for a in articles if a.has_gold or a.si_spans is not None}


def technique_gold(articles: list[Article]) -> dict[str, list[tuple[int, int, str]]]:
    """TC and FLC gold of the articles whose spans carry techniques."""
    return {a.article_id: a.technique_gold() for a in articles if a.has_gold}


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


# The official line formats, by their number of tab-separated fields: SI labels and submissions, then TC and FLC.
LABEL_LINES = {3: "ID<TAB>start<TAB>end", 4: "ID<TAB>technique<TAB>start<TAB>end"}


def read_label_lines(path: Path, columns: int) -> list[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank line of a file in one of the official line formats (LABEL_LINES):
    gold labels, TC templates, submission files. A leading BOM, as Windows tools write, is not part of an ID."""
    rows = []
    for line_number, line in enumerate(read_text_exact(path).removeprefix("\ufeff").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) != columns:
            raise CorpusError(f"{path}:{line_number}: expected {LABEL_LINES[columns]}, got {len(fields)} "
                              "tab-separated fields")
        rows.append((line_number, fields))
    return rows


def _read_technique_labels(path: Path, article_id: str, text_length: int, allow_unknown: bool) -> list[GoldSpan]:
    spans = []
    for line_number, (label_id, technique, start_text, end_text) in read_label_lines(path, 4):
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
    for line_number, (label_id, start_text, end_text) in read_label_lines(path, 3):
        if label_id != article_id:
            raise CorpusError(f"{path}:{line_number}: article id {label_id!r} does not match {article_id!r}")
        start = _parse_int(start_text, path, line_number, "start")
        end = _parse_int(end_text, path, line_number, "end")
        _check_span(start, end, text_length, path, line_number)
        spans.append((start, end))
    return spans


def _read_tc_template(path: Path, texts: dict[str, str]) -> dict[str, list[GoldSpan]]:
    spans: dict[str, list[GoldSpan]] = {article_id: [] for article_id in texts}
    for line_number, (article_id, technique, start_text, end_text) in read_label_lines(path, 4):
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


def corpus_features():
    """The columns of `load_corpus`'s datasets, one row per article (or meme):

    article_id  string   the number in article<ID>.txt, or the meme's id
    text        string   the article exactly as read (BOM and CRLF kept); offsets index it
    spans       list of {start: int64, end: int64, technique: string}: the gold technique spans, one per
                annotation (a fragment with two techniques is listed twice); technique is "?" for the
                spans of a TC template, which carry no gold
    si_spans    list of {start: int64, end: int64}, or None when the split has no task-si gold
    has_gold    bool     True when `spans` carry gold techniques
    """
    from datasets import Features, Value

    span = {"start": Value("int64"), "end": Value("int64")}
    return Features({"article_id": Value("string"), "text": Value("string"),
                     "spans": [{**span, "technique": Value("string")}], "si_spans": [span],
                     "has_gold": Value("bool")})


def articles_dataset(articles: list[Article]):
    """Articles as a `datasets.Dataset` with `corpus_features()`."""
    from datasets import Dataset

    return Dataset.from_list([article.to_record() for article in articles], features=corpus_features())


def read_ptc(data_dir: str | Path, splits: tuple[str, ...] = ("train", "dev")):
    """The PTC splits as a `datasets.DatasetDict` of article records (needs the [train] extra)."""
    from datasets import DatasetDict

    return DatasetDict({split: articles_dataset(read_ptc_articles(data_dir, split)) for split in splits})


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


MEME_FILES = {"train": "training_set_task2.txt", "dev": "dev_set_task2.txt", "test": "test_set_task2.txt"}


def read_memes(data_dir: str | Path, splits: tuple[str, ...] = ("train", "dev")):
    """The meme subtask-2 files (see MEME_FILES) as a `datasets.DatasetDict` of meme records."""
    from datasets import DatasetDict

    return DatasetDict({split: articles_dataset(read_meme_split(data_dir, split)) for split in splits})


def read_meme_split(data_dir: str | Path, split: str) -> list[Article]:
    """One split of the meme files (see MEME_FILES) in `data_dir`."""
    if split not in MEME_FILES:
        raise CorpusError(f"{data_dir}: no meme split {split!r}; the meme files are {', '.join(MEME_FILES)}")
    return read_meme_articles(Path(data_dir) / MEME_FILES[split])


def corpus_splits(folder: Path) -> tuple[bool, list[str]]:
    """(whether `folder` has the PTC layout rather than the meme files, the splits it holds)."""
    if not folder.is_dir():
        raise CorpusError(f"{folder}: no such folder; give a PTC folder or the meme files' folder")
    ptc_splits = sorted(path.name[: -len("-articles")] for path in folder.glob("*-articles") if path.is_dir())
    if ptc_splits:
        return True, ptc_splits
    meme_splits = [split for split, name in MEME_FILES.items() if (folder / name).is_file()]
    if meme_splits:
        return False, meme_splits
    raise CorpusError(f"{folder}: neither the PTC layout (<split>-articles/) nor the meme files "
                      f"({', '.join(MEME_FILES.values())})")


def read_articles(folder: str | Path, split: str) -> list[Article]:
    """One split of a corpus folder, the PTC layout (`<split>-articles/` and its labels) or the SemEval-2021
    Task 6 meme files (MEME_FILES), as Articles (no extra needed)."""
    folder = Path(folder)
    is_ptc, _ = corpus_splits(folder)
    return read_ptc_articles(folder, split) if is_ptc else read_meme_split(folder, split)


def load_corpus(folder: str | Path, splits: list[str] | tuple[str, ...] | None = None):
    """A corpus folder as a `datasets.DatasetDict`, one dataset per split (needs the [train] extra).

    `folder` is what `read_articles` reads; `splits` defaults to every split the folder holds. The columns
    are documented in `corpus_features`; `Article.from_record(row)` turns a row back into an Article.
    """
    folder = Path(folder)
    _, available = corpus_splits(folder)
    from datasets import DatasetDict  # after the folder's checks: they need no extra

    return DatasetDict({split: articles_dataset(read_articles(folder, split)) for split in splits or available})


def split_by_article(articles: list[Article], fraction: float, seed: int) -> tuple[list[Article], list[Article]]:
    """Seeded split of whole articles: (train, validation), each in the input order.

    The one split every command uses: training holds out the validation articles, tuning and
    the baselines fit on them, and a checkpoint lists their ids so others compare on the same ones.
    """
    import random

    order = sorted(articles, key=lambda article: article.article_id)
    random.Random(seed).shuffle(order)
    size = max(1, round(len(order) * fraction)) if fraction > 0 else 0
    validation_ids = {article.article_id for article in order[:size]}
    return ([a for a in articles if a.article_id not in validation_ids],
            [a for a in articles if a.article_id in validation_ids])
