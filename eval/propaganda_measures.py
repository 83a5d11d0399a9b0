"""The SemEval-2020 Task 11 measures (SI, TC, FLC) as a Hugging Face `evaluate` metric, offline.

    import evaluate
    from persuasion.eval import propaganda_measures
    measures = evaluate.load(str(propaganda_measures.PATH))   # this file; nothing is downloaded
    scores = measures.compute(predictions=[...], references=[...])

One prediction and one reference per article, in the same order, each a dict:

    prediction = {"article_id": "111111111",
                  "si":  [{"start": 10, "end": 25}, ...],                            # SI: fragments
                  "tc":  [{"start": 10, "end": 25, "technique": "Loaded_Language"}, ...],  # TC: one per
                         # gold occurrence (a fragment listed twice in the gold is answered twice)
                  "flc": [{"start": 10, "end": 25, "technique": "Loaded_Language"}, ...]}  # FLC
    reference  = {"article_id": "111111111",
                  "si": [{"start": 10, "end": 30}, ...],                                     # SI gold
                  "techniques": [{"start": 10, "end": 30, "technique": "Loaded_Language"}, ...],  # TC, FLC
                  "has_techniques": True}   # False: the article has SI gold only; "techniques" is ignored

Every key is required; lists may be empty. Offsets index the article text as `persuasion.corpus`
reads it; techniques are the names in `persuasion.TECHNIQUES`. The result is
{"si": si_scores, "tc": tc_scores, "flc": flc_scores} of `persuasion.eval.metrics`, which compute
every number; "tc" and "flc" are there when some reference has techniques.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import datasets
import evaluate

from persuasion.eval.metrics import flc_scores, si_scores, tc_scores
from persuasion.taxonomy import TECHNIQUES

PATH = Path(__file__)

_SPAN = {"start": datasets.Value("int64"), "end": datasets.Value("int64")}
_LABELLED_SPAN = {**_SPAN, "technique": datasets.Value("string")}
FEATURES = datasets.Features({
    "predictions": {"article_id": datasets.Value("string"), "si": [_SPAN], "tc": [_LABELLED_SPAN],
                    "flc": [_LABELLED_SPAN]},
    "references": {"article_id": datasets.Value("string"), "si": [_SPAN], "techniques": [_LABELLED_SPAN],
                   "has_techniques": datasets.Value("bool")},
})


class PropagandaMeasures(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="SemEval-2020 Task 11: span identification (SI) and full-pipeline (FLC) partial-overlap "
                        "P/R/F1, and technique classification (TC) micro/macro F1, as the official scorers compute.",
            citation="Da San Martino et al., SemEval-2020 Task 11: Detection of Propaganda Techniques in News "
                     "Articles, SemEval 2020.",
            inputs_description=__doc__,
            features=FEATURES,
        )

    def _compute(self, predictions: list[dict], references: list[dict]) -> dict:
        pairs = list(zip(predictions, references))
        for index, (prediction, reference) in enumerate(pairs):
            if prediction["article_id"] != reference["article_id"]:
                raise ValueError(f"prediction {index} is for article {prediction['article_id']!r} but reference "
                                 f"{index} is for {reference['article_id']!r}; give them in the same order")
        if len({reference["article_id"] for reference in references}) != len(references):
            raise ValueError("an article is listed twice in the references; give one record per article")
        scores = {"si": si_scores({r["article_id"]: _spans(p["si"]) for p, r in pairs},
                                  {r["article_id"]: _spans(r["si"]) for p, r in pairs})}
        labelled = [(p, r) for p, r in pairs if r["has_techniques"]]
        if labelled:
            gold = {r["article_id"]: _labelled(r["techniques"]) for p, r in labelled}
            techniques = list(TECHNIQUES)
            scores["tc"] = tc_scores({r["article_id"]: _labelled(p["tc"]) for p, r in labelled}, gold, techniques)
            scores["flc"] = flc_scores({r["article_id"]: _labelled(p["flc"]) for p, r in labelled}, gold, techniques)
        return scores


def _spans(records: list[dict]) -> list[tuple[int, int]]:
    return [(record["start"], record["end"]) for record in records]


def _labelled(records: list[dict]) -> list[tuple[int, int, str]]:
    return [(record["start"], record["end"], record["technique"]) for record in records]


@lru_cache(maxsize=1)
def load() -> evaluate.EvaluationModule:
    """This metric through `evaluate.load`, kept in memory (no cache files), loaded once per process."""
    return evaluate.load(str(PATH), keep_in_memory=True)


def span_records(spans) -> list[dict]:
    """[(start, end), ...] or [(start, end, technique), ...] as the records the metric reads."""
    keys = ("start", "end", "technique")
    return [dict(zip(keys, span)) for span in spans]
