"""Corpus readers and taxonomy against the real PTC and meme files, and against corrupt layouts."""

from pathlib import Path

import pytest

from persuasion.corpus import (Article, CorpusError, corpus_features, read_meme_articles, read_ptc,
                               read_ptc_articles)
from persuasion.eval.metrics import merge_overlapping_spans
from persuasion.taxonomy import MEME_TO_PTC, TECHNIQUE_INFO, TECHNIQUES


def raw_label_rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_bytes().decode("utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("split, articles, spans", [("train", 371, 6128), ("dev", 75, 1063)])
def test_every_gold_span_round_trips(ptc_dir, split, articles, spans):
    read = read_ptc_articles(ptc_dir, split)
    assert len(read) == articles and sum(len(a.spans) for a in read) == spans
    for article in read:
        # the text is the file's bytes decoded with nothing dropped or normalised
        raw = (ptc_dir / f"{split}-articles" / f"article{article.article_id}.txt").read_bytes().decode("utf-8")
        assert article.text == raw
        rows = raw_label_rows(ptc_dir / f"{split}-labels-task-flc-tc" / f"article{article.article_id}.task-flc-tc.labels")
        assert [(int(s), int(e), t) for _, t, s, e in rows] == [(s.start, s.end, s.technique) for s in article.spans]
        for span in article.spans:
            assert 0 <= span.start < span.end <= len(article.text)
            assert article.text[span.start:span.end] == raw[span.start:span.end]


def test_boms_and_line_breaks_are_kept(ptc_dir):
    by_id = {a.article_id: a for a in read_ptc_articles(ptc_dir, "train") + read_ptc_articles(ptc_dir, "dev")}
    for article_id in ("712382330", "705409419"):
        assert by_id[article_id].text.startswith("\ufeff")
    crossing = [s for a in by_id.values() for s in a.spans if "\n" in a.text[s.start:s.end]]
    assert crossing, "the corpus has spans across line breaks"


def test_dev_si_gold_is_the_union_of_technique_spans(ptc_dir):
    for article in read_ptc_articles(ptc_dir, "dev"):
        assert article.si_spans is not None
        assert merge_overlapping_spans(article.si_spans) == merge_overlapping_spans(
            (s.start, s.end) for s in article.spans)


def test_load_corpus_gives_every_ptc_split_as_a_dataset(ptc_dir):
    from persuasion.corpus import load_corpus

    corpus = load_corpus(ptc_dir)
    assert sorted(corpus) == ["dev", "train"]
    assert corpus["dev"].num_rows == 75 and corpus["train"].num_rows == 371
    assert corpus["dev"].features == corpus_features()
    assert sum(len(record["spans"]) for record in corpus["dev"]) == 1063
    record = next(record for record in corpus["dev"] if record["spans"])
    first = record["spans"][0]
    assert record["text"][first["start"]:first["end"]].strip()
    # Rows turn back into exactly the articles the reader gives (BOMs, CRLF and si_spans kept).
    assert [Article.from_record(row) for row in corpus["dev"]] == read_ptc_articles(ptc_dir, "dev")
    assert list(read_ptc(ptc_dir, ("dev",))) == ["dev"]


def test_load_corpus_reads_the_meme_files(ptc_dir):
    from persuasion.corpus import load_corpus

    memes = load_corpus(ptc_dir.parent / "memes-semeval2021", ["dev"])
    assert memes["dev"].num_rows == 63 and memes["dev"].features == corpus_features()
    assert all(row["si_spans"] is None and row["has_gold"] for row in memes["dev"])
    assert [Article.from_record(row) for row in memes["dev"]] == read_meme_articles(
        ptc_dir.parent / "memes-semeval2021" / "dev_set_task2.txt")


def test_load_corpus_names_a_folder_it_cannot_read(tmp_path):
    from persuasion.corpus import load_corpus

    with pytest.raises(CorpusError, match="neither the PTC layout"):
        load_corpus(tmp_path)
    with pytest.raises(CorpusError, match="no such folder"):
        load_corpus(tmp_path / "missing")


def write_split(root: Path, text: str, label_line: str, split: str = "test") -> Path:
    (root / f"{split}-articles").mkdir(parents=True)
    (root / f"{split}-articles" / "article1.txt").write_text(text, encoding="utf-8", newline="")
    (root / f"{split}-labels-task-flc-tc").mkdir()
    (root / f"{split}-labels-task-flc-tc" / "article1.task-flc-tc.labels").write_text(label_line + "\n")
    return root


def test_span_past_the_end_names_file_and_line(tmp_path):
    root = write_split(tmp_path, "short text", "1\tDoubt\t0\t5\n1\tDoubt\t3\t99")
    with pytest.raises(CorpusError, match=r"article1\.task-flc-tc\.labels:2: span 3-99 lies outside"):
        read_ptc_articles(root, "test")


def test_unknown_technique_names_file_and_line(tmp_path):
    root = write_split(tmp_path, "short text", "1\tPropaganda\t0\t5")
    with pytest.raises(CorpusError, match=r"labels:1: unknown technique 'Propaganda'"):
        read_ptc_articles(root, "test")


def test_missing_folder_and_missing_label_file(tmp_path):
    with pytest.raises(CorpusError, match="test-articles: no such folder"):
        read_ptc_articles(tmp_path, "test")
    root = write_split(tmp_path / "x", "short text", "1\tDoubt\t0\t5")
    (root / "test-articles" / "article2.txt").write_text("another")
    with pytest.raises(CorpusError, match=r"article2\.task-flc-tc\.labels: missing technique labels"):
        read_ptc_articles(root, "test")


def test_bad_integer_and_bad_encoding(tmp_path):
    root = write_split(tmp_path / "a", "short text", "1\tDoubt\tzero\t5")
    with pytest.raises(CorpusError, match=r"labels:1: start 'zero' is not an integer"):
        read_ptc_articles(root, "test")
    root = write_split(tmp_path / "b", "x", "1\tDoubt\t0\t1")
    (root / "test-articles" / "article1.txt").write_bytes(b"caf\xe9")
    with pytest.raises(CorpusError, match=r"article1\.txt: not valid UTF-8 .* at byte 3"):
        read_ptc_articles(root, "test")


def test_template_spans_without_gold(tmp_path):
    (tmp_path / "test-articles").mkdir()
    (tmp_path / "test-articles" / "article7.txt").write_text("They lie and lie.")
    (tmp_path / "test-task-tc-template.out").write_text("7\t?\t5\t8\n7\t?\t5\t8\n")
    [article] = read_ptc_articles(tmp_path, "test")
    assert not article.has_gold and article.si_spans is None
    assert [(s.start, s.end, s.technique) for s in article.spans] == [(5, 8, None), (5, 8, None)]


def test_taxonomy_matches_the_official_names(ptc_dir):
    official = (ptc_dir / "propaganda-techniques-names-semeval2020task11.txt").read_text().split()
    assert sorted(official) == sorted(TECHNIQUES) and len(TECHNIQUES) == 14
    for technique in TECHNIQUE_INFO:
        assert technique.definition.endswith(".") and technique.example


def test_every_meme_label_is_mapped_or_documented(ptc_dir):
    meme_names = (ptc_dir.parent / "memes-semeval2021" / "techniques_list_task1-2.txt").read_text().splitlines()
    meme_names = [name for name in meme_names if name.strip()]
    assert len(meme_names) == 20 and set(meme_names) == set(MEME_TO_PTC)
    assert all(target is None or target in TECHNIQUES for target in MEME_TO_PTC.values())
    unmapped = sorted(name for name, target in MEME_TO_PTC.items() if target is None)
    assert unmapped == ["Glittering generalities (Virtue)", "Obfuscation, Intentional vagueness, Confusion", "Smears"]


def test_meme_spans_round_trip(ptc_dir):
    memes = read_meme_articles(ptc_dir.parent / "memes-semeval2021" / "dev_set_task2.txt")
    assert len(memes) == 63
    for meme in memes:
        for span in meme.spans:
            assert 0 <= span.start < span.end <= len(meme.text) and span.technique in TECHNIQUES
