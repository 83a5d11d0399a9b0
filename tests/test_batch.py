"""`persuasion detect` on real files with the tiny detector: inputs, offsets, bad input, resume, shards."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from persuasion.cli import main

ROOT = Path(__file__).resolve().parents[1]
SENTENCE = "The corrupt elite lied again, said the officials on Tuesday.\r\nEveryone knows it is true."


# fp32, as tiny_detector computes (`auto` is bf16 on a CPU with native bf16); a test's own --precision comes later, and wins
def detect(tiny_checkpoint, *arguments: str) -> int:
    return main(["detect", "--precision", "fp32", *map(str, arguments), "--model", str(tiny_checkpoint), "--quiet"])


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def exact_text(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as file:
        return file.read()


def detect_command(tiny_checkpoint, *arguments) -> list[str]:
    return [sys.executable, "-m", "persuasion.cli", "detect", "--precision", "fp32", *map(str, arguments),
            "--model", str(tiny_checkpoint), "--quiet"]


# Inputs, ids and order


def test_every_kind_of_input_gives_one_record_each_in_input_order(tmp_path, tiny_checkpoint, monkeypatch):
    folder = tmp_path / "articles"
    (folder / "later").mkdir(parents=True)
    (folder / "b.txt").write_text("Officials met on Tuesday.", encoding="utf-8")
    (folder / "a.txt").write_text("They always lie to you.", encoding="utf-8")
    (folder / "later" / "c.txt").write_text("The corrupt elite lied again.", encoding="utf-8")
    (folder / "notes.md").write_text("not a .txt file, so not read", encoding="utf-8")
    rows = write_jsonl(tmp_path / "rows.jsonl", [{"id": "first", "text": "Wake up, people!"}, {"text": "No id here."}])
    table = tmp_path / "table.csv"
    table.write_text('id,text\nx1,"Only a traitor, would vote\r\nfor this."\n,No id either.\n', encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("Read from a pipe.".encode())))
    output = tmp_path / "out.jsonl"

    assert detect(tiny_checkpoint, folder, rows, "-", table, "-o", output) == 0

    records = read_jsonl(output)
    assert [(r["id"], r["index"], r["source"]) for r in records] == [
        (str(folder / "a.txt"), 0, str(folder / "a.txt")),
        (str(folder / "b.txt"), 1, str(folder / "b.txt")),
        (str(folder / "later" / "c.txt"), 2, str(folder / "later" / "c.txt")),
        ("first", 3, f"{rows}:1"),
        (f"{rows}:2", 4, f"{rows}:2"),
        ("<stdin>", 5, "<stdin>"),
        ("x1", 6, f"{table}:2"),
        (f"{table}:4", 7, f"{table}:4"),
    ]
    assert all("error" not in record and {"spans", "sentences", "summary"} <= set(record) for record in records)
    texts = ["They always lie to you.", "Officials met on Tuesday.", "The corrupt elite lied again.",
             "Wake up, people!", "No id here.", "Read from a pipe.", "Only a traitor, would vote\r\nfor this.",
             "No id either."]
    for record, text in zip(records, texts):
        assert all(text[s["start"]:s["end"]] == s["text"] for s in record["spans"]), record["id"]


def test_offsets_index_the_file_with_its_bom_and_crlf_kept(tmp_path, tiny_checkpoint, tiny_detector):
    article = tmp_path / "article.txt"
    article.write_bytes(("\ufeff" + SENTENCE * 3).encode("utf-8"))
    output = tmp_path / "out.jsonl"

    assert detect(tiny_checkpoint, article, "-o", output) == 0

    [record] = read_jsonl(output)
    text = exact_text(article)
    assert text.startswith("\ufeff") and "\r\n" in text
    assert record["spans"], "the tiny detector is tuned to emit spans; without them this test checks nothing"
    assert all(text[span["start"]:span["end"]] == span["text"] for span in record["spans"])
    assert max(span["start"] for span in record["spans"]) > text.index("\r\n")  # past the first CRLF
    assert record["spans"] == tiny_detector.detect(text).to_dict()["spans"]


# Record formats


def test_csv_has_a_row_per_span_and_one_row_for_a_document_without_spans_or_with_an_error(tmp_path, tiny_checkpoint):
    (tmp_path / "spoken.txt").write_text(SENTENCE, encoding="utf-8")
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "binary.txt").write_bytes(b"GIF89a\x00\x01")
    output = tmp_path / "out.csv"

    assert detect(tiny_checkpoint, tmp_path / "spoken.txt", tmp_path / "empty.txt", tmp_path / "binary.txt",
                  "-o", output) == 1

    with open(output, encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["id", "index", "start", "end", "technique", "score", "text", "error"]
    spoken = [row for row in rows if row["index"] == "0"]
    assert spoken and all(SENTENCE[int(row["start"]):int(row["end"])] == row["text"] for row in spoken)
    [empty] = [row for row in rows if row["index"] == "1"]
    assert empty["start"] == "" and empty["error"] == ""
    [binary] = [row for row in rows if row["index"] == "2"]
    assert binary["start"] == "" and binary["error"].startswith("binary file")


def test_text_format_is_a_readable_block_per_document(tmp_path, tiny_checkpoint, capsys):
    (tmp_path / "spoken.txt").write_text(SENTENCE, encoding="utf-8")
    (tmp_path / "binary.txt").write_bytes(b"GIF89a\x00\x01")

    assert detect(tiny_checkpoint, tmp_path / "spoken.txt", tmp_path / "binary.txt", "--format", "text") == 1

    blocks = capsys.readouterr().out.split("\n\n")
    assert blocks[0].startswith(f"[0] {tmp_path / 'spoken.txt'}\n  ")
    assert blocks[1] == f"[1] {tmp_path / 'binary.txt'}\n  error: binary file (NUL byte at byte offset 6), not text"


def test_html_report_is_one_page_written_whole(tmp_path, tiny_checkpoint):
    (tmp_path / "spoken.txt").write_text(SENTENCE, encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    output = tmp_path / "report.html"

    assert detect(tiny_checkpoint, tmp_path / "spoken.txt", tmp_path / "latin1.txt", "-o", output) == 1

    page = output.read_text(encoding="utf-8")
    assert page.lstrip().lower().startswith("<!doctype html") and "not UTF-8" in page
    assert sorted(path.name for path in tmp_path.iterdir()) == ["latin1.txt", "report.html", "spoken.txt"]
    assert detect(tiny_checkpoint, tmp_path / "spoken.txt", "-o", output, "--resume") == 2


def test_an_html_report_is_as_readable_as_the_other_outputs(tmp_path, tiny_checkpoint):
    (tmp_path / "spoken.txt").write_text(SENTENCE, encoding="utf-8")
    modes = {}
    for suffix in (".html", ".jsonl", ".csv"):
        output = tmp_path / f"found{suffix}"
        assert detect(tiny_checkpoint, tmp_path / "spoken.txt", "-o", output) == 0
        modes[suffix] = output.stat().st_mode & 0o777
    assert modes[".html"] == modes[".jsonl"] == modes[".csv"], modes


# Bad input and the exit status


@pytest.mark.parametrize("inputs, status", [
    (["good.txt", "good.jsonl"], 0),
    (["good.txt", "no-text-column.csv"], 1),
    (["good.txt", "bad.jsonl"], 1),
    (["no-text-column.csv"], 3),
    (["bad.jsonl"], 3),
    (["bad.jsonl", "no-text-column.csv"], 3),
])
def test_exit_status_is_0_only_when_every_document_was_scored(tmp_path, tiny_checkpoint, inputs, status):
    (tmp_path / "good.txt").write_text(SENTENCE, encoding="utf-8")
    write_jsonl(tmp_path / "good.jsonl", [{"id": "g1", "text": SENTENCE}, {"id": "g2", "text": ""}])
    (tmp_path / "no-text-column.csv").write_text("id,body\nb1,Some text.\n", encoding="utf-8")
    (tmp_path / "bad.jsonl").write_bytes(b'not json\n{"id": "no-text"}\n[1]\n')
    output = tmp_path / "out.jsonl"

    assert detect(tiny_checkpoint, *(tmp_path / name for name in inputs), "-o", output) == status

    records = read_jsonl(output)  # error records are written whatever the status
    expected = {"good.txt": 1, "good.jsonl": 2, "no-text-column.csv": 1, "bad.jsonl": 3}
    assert len(records) == sum(expected[name] for name in inputs)
    assert sum("error" in record for record in records) == sum(expected[name] for name in inputs
                                                                if name in ("no-text-column.csv", "bad.jsonl"))


def test_an_empty_or_blank_text_is_a_result_without_spans(tmp_path, tiny_checkpoint, monkeypatch):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.txt").write_bytes(b" \r\n\t\n")
    rows = write_jsonl(tmp_path / "rows.jsonl", [{"id": "empty", "text": ""}, {"id": "blank", "text": "  \n "}])
    (tmp_path / "rows.csv").write_text("id,text\nc-empty,\n", encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\n")))
    output = tmp_path / "out.jsonl"

    assert detect(tiny_checkpoint, tmp_path / "empty.txt", tmp_path / "blank.txt", rows, tmp_path / "rows.csv", "-",
                  "-o", output) == 0

    records = read_jsonl(output)
    assert len(records) == 6
    assert all(record["spans"] == [] and record["summary"] == [] and "error" not in record for record in records)


@pytest.mark.parametrize("documents, line", [
    (1, "persuasion detect: 1 document written to {output} (0 with an error)\n"),
    (2, "persuasion detect: 2 documents written to {output} (0 with an error)\n"),
])
def test_the_summary_counts_documents_in_words(tmp_path, tiny_checkpoint, capsys, documents, line):
    rows = write_jsonl(tmp_path / "rows.jsonl", [{"text": SENTENCE}] * documents)
    output = tmp_path / "out.jsonl"

    assert main(["detect", str(rows), "-o", str(output), "--model", str(tiny_checkpoint)]) == 0

    assert capsys.readouterr().err == line.format(output=output)



def test_each_bad_input_is_an_error_record_and_the_rest_is_scored(tmp_path, tiny_checkpoint, monkeypatch):
    good = tmp_path / "good.txt"
    good.write_text(SENTENCE, encoding="utf-8")
    locked = tmp_path / "locked.txt"
    locked.write_text(SENTENCE, encoding="utf-8")
    read_bytes = Path.read_bytes

    def unreadable(path: Path) -> bytes:  # chmod 000 does not stop root, who may run these tests
        if path.name == "locked.txt":
            raise PermissionError(13, "Permission denied", str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", unreadable)
    (tmp_path / "latin1.txt").write_bytes("Le café est prêt.".encode("latin-1"))
    (tmp_path / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.txt").write_bytes(b" \r\n\t\n")
    (tmp_path / "huge.txt").write_bytes(b"a" * 5_000_001)
    rows = tmp_path / "rows.jsonl"
    rows.write_bytes(b'{"id": "ok", "text": "They always lie."}\n'
                     b'{"id": "cut", "text": "unfinished\n'
                     b'[1, 2]\n'
                     b'{"id": "no-text", "body": "x"}\n'
                     b'{"id": "number", "text": 42}\n'
                     b'{"id": "latin1", "text": "caf\xe9"}\n'
                     b'{"id": "ok2", "text": "Wake up!"}\n')
    table = tmp_path / "table.csv"
    table.write_bytes(b'id,text\nc1,Fine text.\nc2,too,many,fields\nc3,caf\xe9\nc4,Also fine.\n')
    unterminated = tmp_path / "unterminated.csv"
    unterminated.write_bytes(b'id,text\nu1,Fine text.\nu2,"This quote is never closed.\nu3,Swallowed by it.\n')
    names = ["good.txt", "locked.txt", "latin1.txt", "binary.txt", "empty.txt", "blank.txt", "huge.txt"]
    output = tmp_path / "out.jsonl"

    assert detect(tiny_checkpoint, *(tmp_path / name for name in names), rows, table, unterminated,
                  "-o", output) == 1

    errors = {record["id"]: record.get("error") for record in read_jsonl(output)}
    expected = {
        "good.txt": None,
        "locked.txt": "cannot read: Permission denied",
        "latin1.txt": "not UTF-8: byte 0xe9 at byte offset 6",
        "binary.txt": "binary file (NUL byte at byte offset 8)",
        "empty.txt": None,
        "blank.txt": None,
        "huge.txt": "5,000,001 characters is over the 5,000,000-character limit",
    }
    expected = {str(tmp_path / name): error for name, error in expected.items()}
    expected.update({"ok": None, f"{rows}:2": "not JSON", f"{rows}:3": "an array, not an object",
                     "no-text": "no 'text' field", "number": "'text' is a number, not a string",
                     "latin1": f"not UTF-8: byte 0xe9 at byte offset {rows.read_bytes().index(bytes([0xE9]))}",
                     "ok2": None, "c1": None, "c2": "malformed CSV row: 4 fields where the header has 2",
                     "c3": "not UTF-8: byte 0xe9", "c4": None, "u1": None,
                     f"{unterminated}:3": "malformed CSV: the quote opened on line 3 is never closed"})
    assert list(errors) == list(expected)
    for document_id, error in expected.items():
        if error is None:
            assert errors[document_id] is None, document_id
        else:
            assert errors[document_id].startswith(error) and "\n" not in errors[document_id], document_id


def test_a_document_the_model_fails_on_is_an_error_record_and_its_batch_is_still_scored(
        tmp_path, tiny_checkpoint, monkeypatch):
    from persuasion.model.detector import Detector

    detect_many = Detector.detect_many

    def fails_on_poison(self, texts, *options):
        texts = list(texts)
        if any("POISON" in text for text in texts):
            raise RuntimeError("CUDA out of memory\nTried to allocate 80 GiB")
        return detect_many(self, texts, *options)

    monkeypatch.setattr(Detector, "detect_many", fails_on_poison)
    rows = write_jsonl(tmp_path / "rows.jsonl", [{"id": "before", "text": SENTENCE}, {"id": "bad", "text": "POISON"},
                                                 {"id": "after", "text": SENTENCE}])
    output = tmp_path / "out.jsonl"

    assert detect(tiny_checkpoint, rows, "-o", output, "--batch-size", "32") == 1

    records = read_jsonl(output)
    assert [record["id"] for record in records] == ["before", "bad", "after"]
    assert records[1]["error"] == "the model failed on this document: RuntimeError: CUDA out of memory"
    assert records[0]["spans"] == records[2]["spans"] and "error" not in records[2]


@pytest.mark.parametrize("arguments, message", [
    (["missing.txt"], "missing.txt: no such file or directory"),
    ([], "no input given"),
    (["{good}", "--shard", "3/2"], "--shard '3/2'"),
    (["{good}", "--resume"], "--resume needs --output"),
    ([""], "an empty INPUT"),  # `persuasion detect "$UNSET"`: not the current folder
    (["{good}", "-o", "out.pdf"], "--output out.pdf: unknown extension .pdf"),
    (["{good}", "--min-score", "1.5"], "--min-score 1.5: give a score from 0 to 1"),
    (["{good}", "--precision", "fp8"], "precision 'fp8': give one of auto, fp32, bf16, int8"),
])
def test_an_unusable_command_is_one_line_and_exit_2(tmp_path, tiny_checkpoint, capsys, arguments, message):
    good = tmp_path / "good.txt"
    good.write_text(SENTENCE, encoding="utf-8")
    arguments = [argument.format(good=good) for argument in arguments]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        assert detect(tiny_checkpoint, *arguments) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and message in captured.err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["good.txt"]


def test_min_score_leaves_out_the_spans_scoring_below_it(tmp_path, tiny_checkpoint, tiny_detector):
    from conftest import make_article

    text = make_article(400, seed=8)
    (tmp_path / "speech.txt").write_text(text, encoding="utf-8")
    everything = tiny_detector.detect(text).spans
    cut = sorted(span.score for span in everything)[len(everything) // 2]
    assert detect(tiny_checkpoint, tmp_path / "speech.txt", "--min-score", cut, "-o", tmp_path / "found.jsonl") == 0
    kept = read_jsonl(tmp_path / "found.jsonl")[0]["spans"]
    assert [span["score"] for span in kept] == [span.score for span in everything if span.score >= cut]
    assert 0 < len(kept) < len(everything)


def test_a_long_document_shows_its_progress_on_stderr(tmp_path, tiny_checkpoint, tiny_detector, capsys):
    from conftest import make_article
    from persuasion.model.streaming import STREAMED_CHARACTERS

    text = make_article(STREAMED_CHARACTERS // 5, seed=9)
    (tmp_path / "book.txt").write_text(text, encoding="utf-8")
    assert main(["detect", str(tmp_path / "book.txt"), "--model", str(tiny_checkpoint), "--precision", "fp32", "-o",
                 str(tmp_path / "found.jsonl")]) == 0
    error = capsys.readouterr().err
    assert "long document" in error and "char" in error
    assert read_jsonl(tmp_path / "found.jsonl")[0]["spans"] == tiny_detector.detect(text).to_dict()["spans"]


def test_existing_output_is_never_overwritten_without_resume(tmp_path, tiny_checkpoint, capsys):
    (tmp_path / "a.txt").write_text(SENTENCE, encoding="utf-8")
    output = tmp_path / "out.jsonl"
    output.write_text("earlier work\n", encoding="utf-8")

    assert detect(tiny_checkpoint, tmp_path / "a.txt", "-o", output) == 2

    assert "--resume" in capsys.readouterr().err
    assert output.read_text(encoding="utf-8") == "earlier work\n"


def test_resume_refuses_output_of_other_inputs(tmp_path, tiny_checkpoint, capsys):
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text(SENTENCE, encoding="utf-8")
    output = tmp_path / "out.jsonl"
    assert detect(tiny_checkpoint, tmp_path / "a.txt", "-o", output) == 0
    before = output.read_bytes()

    assert detect(tiny_checkpoint, tmp_path / "b.txt", tmp_path / "a.txt", "-o", output, "--resume") == 2

    assert "input changed" in capsys.readouterr().err
    assert output.read_bytes() == before


# Exactly once


@pytest.mark.parametrize("output_format", ["jsonl", "csv", "text"])
def test_resume_from_output_cut_anywhere_ends_as_an_uninterrupted_run(tmp_path, tiny_checkpoint, output_format):
    rows = [{"id": f"dóc{number}", "text": f"Document {number}: « {SENTENCE} »"} for number in range(4)]
    rows.insert(2, {"id": "broken"})
    inputs = write_jsonl(tmp_path / "rows.jsonl", rows)
    full = tmp_path / f"full.{output_format}"
    assert detect(tiny_checkpoint, inputs, "-o", full, "--format", output_format, "--batch-size", "4") == 1
    expected = full.read_bytes()
    line_ends = [position for position, byte in enumerate(expected) if byte == ord("\n")]
    inside_a_character = expected.index("ó".encode()) + 1
    cuts = sorted({0, 1, inside_a_character, len(expected) // 3, len(expected) // 2, len(expected),
                   line_ends[0], line_ends[0] + 1, line_ends[len(line_ends) // 2] + 1, line_ends[-2] + 1})

    for cut in cuts:
        partial = tmp_path / f"cut-{cut}.{output_format}"
        partial.write_bytes(expected[:cut])
        assert detect(tiny_checkpoint, inputs, "-o", partial, "--format", output_format, "--batch-size", "4",
                      "--resume") in (0, 1)  # 1 when the broken row is among the documents scored again
        assert partial.read_bytes() == expected, f"resumed after a cut at byte {cut}"


def test_resume_after_kill_9_writes_every_record_once(tmp_path, tiny_checkpoint):
    texts = [{"id": f"doc{number}", "text": f"Document {number}. {SENTENCE}"} for number in range(300)]
    inputs = write_jsonl(tmp_path / "rows.jsonl", texts)
    expected = tmp_path / "expected.jsonl"
    assert detect(tiny_checkpoint, inputs, "-o", expected, "--batch-size", "4") == 0
    output = tmp_path / "out.jsonl"

    process = subprocess.Popen(detect_command(tiny_checkpoint, inputs, "-o", output, "--batch-size", "4"), cwd=ROOT)
    deadline = time.monotonic() + 60
    while (not output.exists() or output.read_bytes().count(b"\n") < 5) and process.poll() is None:
        assert time.monotonic() < deadline, "the detect process wrote nothing in 60 s"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    written = output.read_bytes()
    assert written.count(b"\n") < len(texts), "the process finished before it was killed: nothing was tested"
    last_line_start = written.rstrip(b"\n").rfind(b"\n") + 1
    output.write_bytes(written[: (last_line_start + len(written)) // 2])  # as if the kill tore the last write

    resumed = subprocess.run(detect_command(tiny_checkpoint, inputs, "-o", output, "--batch-size", "4", "--resume"),
                             cwd=ROOT, capture_output=True, text=True)

    assert resumed.returncode == 0, resumed.stderr
    assert output.read_bytes() == expected.read_bytes()


# Scale-out


def test_two_concurrent_shards_merged_by_index_equal_one_run(tmp_path, tiny_checkpoint):
    folder = tmp_path / "articles"
    folder.mkdir()
    for number in range(5):
        (folder / f"{number}.txt").write_text(f"Article {number}. {SENTENCE}", encoding="utf-8")
    (folder / "5.txt").write_bytes(b"\xff\xfe")
    rows = write_jsonl(tmp_path / "rows.jsonl", [{"id": f"r{n}", "text": f"Row {n}. {SENTENCE}"} for n in range(6)]
                       + [["not", "an", "object"]])
    whole = tmp_path / "whole.jsonl"
    assert detect(tiny_checkpoint, folder, rows, "-o", whole, "--batch-size", "4") == 1

    shards = [tmp_path / f"shard{number}.jsonl" for number in (1, 2)]
    processes = [subprocess.Popen(detect_command(tiny_checkpoint, folder, rows, "-o", shard, "--batch-size", "4",
                                                 "--shard", f"{number}/2"), cwd=ROOT, stderr=subprocess.PIPE)
                 for number, shard in enumerate(shards, 1)]
    for process in processes:
        assert process.wait(timeout=120) == 1, process.stderr.read()  # each shard holds a bad document

    merged = sorted((record for shard in shards for record in read_jsonl(shard)), key=lambda record: record["index"])
    assert merged == read_jsonl(whole)
    assert {record["index"] % 2 for record in read_jsonl(shards[1])} == {1}


def test_accelerate_launch_environment_picks_the_shard_and_names_the_output(tmp_path, tiny_checkpoint, monkeypatch):
    for number in range(4):
        (tmp_path / f"{number}.txt").write_text(f"Article {number}. {SENTENCE}", encoding="utf-8")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")

    assert detect(tiny_checkpoint, *(tmp_path / f"{number}.txt" for number in range(4)),
                  "-o", tmp_path / "out.jsonl") == 0

    assert [record["index"] for record in read_jsonl(tmp_path / "out.jsonl.rank1")] == [1, 3]


def test_parquet_rows_are_documents_and_a_broken_file_or_missing_column_an_error_record(tmp_path, tiny_checkpoint):
    import pyarrow as pa
    import pyarrow.parquet as parquet

    parquet.write_table(pa.table({"id": ["q1", None], "text": [SENTENCE, None]}), tmp_path / "rows.parquet")
    parquet.write_table(pa.table({"body": ["no text column"]}), tmp_path / "other.parquet")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 this is not Parquet")
    output = tmp_path / "out.jsonl"

    assert detect(tiny_checkpoint, tmp_path / "rows.parquet", tmp_path / "other.parquet", tmp_path / "broken.parquet",
                  "-o", output) == 1

    records = read_jsonl(output)
    assert [(record["id"], record["source"]) for record in records] == [
        ("q1", f"{tmp_path / 'rows.parquet'}:1"), (f"{tmp_path / 'rows.parquet'}:2", f"{tmp_path / 'rows.parquet'}:2"),
        (str(tmp_path / "other.parquet"),) * 2, (str(tmp_path / "broken.parquet"),) * 2]
    assert "error" not in records[0] and all(SENTENCE[s["start"]:s["end"]] == s["text"] for s in records[0]["spans"])
    assert records[1]["error"] == "'text' is null, not a string"
    assert records[2]["error"].startswith("no 'text' column (columns: 'body')")
    assert records[3]["error"].startswith("cannot read as Parquet: ") and "\n" not in records[3]["error"]
