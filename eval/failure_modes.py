"""Where a system is known to be weak, measured rather than guessed; the model card reports these.

    python -m persuasion.eval.failure_modes --data ../shared/data --out eval/results/failure_modes.json

Each probe scores the system with the official measures on a variation of the benchmark:
- memes: the SemEval-2021 meme dev texts (short, mostly upper case, another register), with
  the meme labels mapped onto the 14 PTC techniques (unmapped labels dropped);
- upper case: the dev articles upper-cased character by character (offsets unchanged);
- long documents: the dev articles joined into documents of about 10 articles each, so most
  spans sit far from the start and many windows are needed;
- short inputs: each dev sentence (line) scored on its own, without its article around it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from persuasion.corpus import Article, GoldSpan, read_meme_articles, read_ptc_articles
from persuasion.eval.benchmark import headline, score
from persuasion.eval.systems import load_system

ARTICLES_PER_LONG_DOCUMENT = 10


def upper_cased(article: Article) -> Article:
    # Characters whose upper case is longer (like "ß" -> "SS") stay as they are, keeping offsets valid.
    text = "".join(c.upper() if len(c.upper()) == 1 else c for c in article.text)
    return Article(article.article_id, text, article.spans, article.si_spans, article.has_gold)


def joined(articles: list[Article], size: int) -> list[Article]:
    documents = []
    for first in range(0, len(articles), size):
        group = articles[first: first + size]
        text, spans, si_spans = "", [], []
        for article in group:
            offset = len(text)
            spans += [GoldSpan(s.start + offset, s.end + offset, s.technique) for s in article.spans]
            si_spans += [(s + offset, e + offset) for s, e in (article.si_spans or [])]
            text += article.text + "\n\n"
        documents.append(Article(f"joined-{first // size}", text, spans, si_spans, has_gold=True))
    return documents


def lines_alone(articles: list[Article]) -> list[Article]:
    """Every non-blank line as its own document, with the gold spans that lie wholly inside it."""
    documents = []
    for article in articles:
        position = 0
        for number, line in enumerate(article.text.split("\n")):
            start, end = position, position + len(line)
            position = end + 1
            if not line.strip():
                continue
            spans = [GoldSpan(s.start - start, s.end - start, s.technique) for s in article.spans
                     if start <= s.start and s.end <= end]
            si_spans = [(s - start, e - start) for s, e in (article.si_spans or []) if start <= s and e <= end]
            documents.append(Article(f"{article.article_id}:{number}", line, spans, si_spans, has_gold=True))
    return documents


def probe(system, articles: list[Article]) -> dict:
    predictions = system.predict(articles, lambda done: None)
    return {"documents": len(articles), **headline(score(articles, predictions))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder holding ptc-semeval2020/ and memes-semeval2021/")
    parser.add_argument("--system", default="default")
    parser.add_argument("--out", required=True, help="JSON file for the results")
    args = parser.parse_args(argv)
    data = Path(args.data)
    ptc = data / "ptc-semeval2020"
    system = load_system(args.system, ptc)
    dev = read_ptc_articles(ptc, "dev")
    probes = {
        "dev articles": dev,
        "upper-cased dev articles": [upper_cased(article) for article in dev],
        f"dev joined {ARTICLES_PER_LONG_DOCUMENT} articles per document": joined(dev, ARTICLES_PER_LONG_DOCUMENT),
        "dev lines scored alone": lines_alone(dev),
        "meme dev texts": read_meme_articles(data / "memes-semeval2021" / "dev_set_task2.txt"),
    }
    results = {}
    for name, articles in probes.items():
        results[name] = probe(system, articles)
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"system": system.name, "probes": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
