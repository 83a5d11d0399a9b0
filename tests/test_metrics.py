"""The official SemEval-2020 Task 11 measures on cases small enough to compute by hand."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from persuasion.eval.metrics import (ArticleParts, article_intervals, expected_calibration_error, flc_scores,
                                     merge_overlapping_spans, si_scores, tc_scores)

approx = pytest.approx


def test_si_partial_overlap_credits_the_shared_characters():
    # predicted 0-10, gold 5-15: 5 shared characters; P = 5/10, R = 5/10
    scores = si_scores({"a": [(0, 10)]}, {"a": [(5, 15)]})
    assert (scores["precision"], scores["recall"], scores["f1"]) == (approx(0.5), approx(0.5), approx(0.5))


def test_si_pools_articles_and_divides_by_span_counts():
    # article a: exact hit (1, 1); article b: prediction 0-4 inside gold 0-8 (P credit 1, R credit 0.5)
    # plus one false positive. P = (1 + 1 + 0) / 3, R = (1 + 0.5) / 2
    predicted = {"a": [(10, 20)], "b": [(0, 4), (30, 40)]}
    gold = {"a": [(10, 20)], "b": [(0, 8)]}
    scores = si_scores(predicted, gold)
    assert scores["precision"] == approx(2 / 3)
    assert scores["recall"] == approx(0.75)
    assert scores["f1"] == approx(2 * (2 / 3) * 0.75 / (2 / 3 + 0.75))


def test_si_spans_that_only_touch_stay_two_on_both_sides():
    # 0-2 and 2-10 share no character: two spans, as the official scorer keeps them.
    # Predicted, against gold 0-2: P = (2/2 + 0/8) / 2 = 0.5, R = (2/2) / 1 = 1, F1 = 2 * 0.5 * 1 / 1.5 = 2/3
    # (joined into 0-10 they would give P = 2/10).
    scores = si_scores({"a": [(0, 2), (2, 10)]}, {"a": [(0, 2)]})
    assert (scores["predicted_spans"], scores["gold_spans"]) == (2, 1)
    assert (scores["precision"], scores["recall"], scores["f1"]) == (approx(0.5), approx(1.0), approx(2 / 3))
    # Gold, against predicted 0-2: P = (2/2) / 1 = 1, R = (2/2 + 0/8) / 2 = 0.5.
    scores = si_scores({"a": [(0, 2)]}, {"a": [(0, 2), (2, 10)]})
    assert (scores["predicted_spans"], scores["gold_spans"]) == (1, 2)
    assert (scores["precision"], scores["recall"]) == (approx(1.0), approx(0.5))


def test_si_merges_spans_that_share_a_character():
    # overlapping 0-6 and 4-10 share 4-6: one span 0-10; against gold 0-5, P = 5/10, R = 5/5
    scores = si_scores({"a": [(0, 6), (4, 10)]}, {"a": [(0, 5)]})
    assert scores["predicted_spans"] == 1
    assert (scores["precision"], scores["recall"]) == (approx(0.5), approx(1.0))
    # nested 2-5 inside 0-10 is 0-10 alone: the same figures
    assert si_scores({"a": [(0, 10), (2, 5)]}, {"a": [(0, 5)]}) == scores
    # duplicates are one span: 3-8 against gold 0-5 shares 3-5, P = 2/5, R = 2/5
    scores = si_scores({"a": [(3, 8), (3, 8)]}, {"a": [(0, 5), (0, 5)]})
    assert (scores["predicted_spans"], scores["gold_spans"]) == (1, 1)
    assert (scores["precision"], scores["recall"]) == (approx(0.4), approx(0.4))
    # 0-5 and 5-10 only touch, but 3-7 shares a character with each: all three are 0-10
    assert merge_overlapping_spans([(0, 5), (5, 10), (3, 7)]) == [(0, 10)]


def test_si_pools_touching_overlapping_nested_and_duplicate_spans():
    predicted = {"touching": [(0, 2), (2, 10)], "overlapping": [(0, 6), (4, 10)],
                 "nested": [(10, 20), (12, 15)], "duplicate": [(3, 8), (3, 8)]}
    gold = {"touching": [(0, 2)], "overlapping": [(0, 5)],
            "nested": [(10, 12), (12, 20)], "duplicate": [(0, 5), (0, 5)]}
    # merged predicted: 0-2, 2-10 | 0-10 | 10-20 | 3-8 -> 5 spans; merged gold: 0-2 | 0-5 | 10-12, 12-20 | 0-5 -> 5
    # P credit: (2/2 + 0/8) + 5/10 + (2/10 + 8/10) + 2/5 = 1 + 0.5 + 1 + 0.4 = 2.9
    # R credit: 2/2 + 5/5 + (2/2 + 8/8) + 2/5 = 1 + 1 + 2 + 0.4 = 4.4
    scores = si_scores(predicted, gold)
    assert (scores["predicted_spans"], scores["gold_spans"]) == (5, 5)
    precision, recall = 2.9 / 5, 4.4 / 5
    assert scores["precision"] == approx(precision, abs=1e-12)
    assert scores["recall"] == approx(recall, abs=1e-12)
    assert scores["f1"] == approx(2 * precision * recall / (precision + recall), abs=1e-12)  # 0.699178...


def test_si_rejects_spans_the_official_scorer_rejects():
    for span in [(5, 5), (6, 5), (-1, 5)]:
        with pytest.raises(ValueError, match="article a"):
            si_scores({"a": [span]}, {"a": [(0, 5)]})


def test_si_one_prediction_covering_two_gold_spans():
    # predicted 0-20 over gold 0-5 and 10-20: P = (5 + 10) / 20, R = (1 + 1) / 2
    scores = si_scores({"a": [(0, 20)]}, {"a": [(0, 5), (10, 20)]})
    assert scores["precision"] == approx(0.75)
    assert scores["recall"] == approx(1.0)


def test_si_empty_predictions_and_articles_without_gold():
    assert si_scores({}, {"a": [(0, 5)]}) == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                              "predicted_spans": 0, "gold_spans": 1}
    # predictions in an article with no gold are pure false positives
    scores = si_scores({"a": [(0, 5)], "b": [(0, 5)]}, {"a": [(0, 5)], "b": []})
    assert scores["precision"] == approx(0.5) and scores["recall"] == approx(1.0)
    # nothing to find and nothing found: F1 is 1, as the official scorer has it
    assert si_scores({}, {})["f1"] == 1.0


def test_tc_duplicate_fragment_with_two_techniques_matches_as_a_multiset():
    gold = {"a": [(0, 5, "Loaded_Language"), (0, 5, "Name_Calling,Labeling"), (7, 9, "Doubt")]}
    swapped = {"a": [(0, 5, "Name_Calling,Labeling"), (0, 5, "Loaded_Language"), (7, 9, "Doubt")]}
    assert tc_scores(swapped, gold)["micro_f1"] == approx(1.0)
    repeated = {"a": [(0, 5, "Loaded_Language"), (0, 5, "Loaded_Language"), (7, 9, "Doubt")]}
    scores = tc_scores(repeated, gold)
    assert scores["micro_f1"] == approx(2 / 3)
    loaded = scores["per_technique"]["Loaded_Language"]
    assert (loaded["precision"], loaded["recall"]) == (approx(0.5), approx(1.0))
    assert scores["per_technique"]["Name_Calling,Labeling"]["recall"] == 0.0


def test_tc_macro_averages_over_gold_techniques():
    gold = {"a": [(0, 1, "Doubt"), (2, 3, "Doubt"), (4, 5, "Slogans"), (6, 7, "Slogans")]}
    predicted = {"a": [(0, 1, "Doubt"), (2, 3, "Doubt"), (4, 5, "Doubt"), (6, 7, "Slogans")]}
    scores = tc_scores(predicted, gold)
    # Doubt: P 2/3, R 1 -> F1 0.8; Slogans: P 1, R 1/2 -> F1 2/3
    assert scores["micro_f1"] == approx(0.75)
    assert scores["macro_f1"] == approx((0.8 + 2 / 3) / 2)
    assert scores["confusion"] == {"Doubt\tDoubt": 2, "Slogans\tDoubt": 1, "Slogans\tSlogans": 1}


def test_tc_missing_answers_lower_recall_only():
    gold = {"a": [(0, 1, "Doubt"), (2, 3, "Doubt")]}
    scores = tc_scores({"a": [(0, 1, "Doubt")]}, gold)
    assert scores["micro_precision"] == approx(1.0) and scores["micro_recall"] == approx(0.5)


def test_flc_counts_overlap_only_between_equal_techniques():
    gold = {"a": [(0, 10, "Doubt"), (5, 10, "Slogans")]}
    predicted = {"a": [(0, 10, "Slogans")]}
    # only 5-10 matches (Slogans): P = 5/10 over 1 prediction, R = (0 + 5/5) / 2
    scores = flc_scores(predicted, gold)
    assert scores["precision"] == approx(0.5) and scores["recall"] == approx(0.5)
    assert scores["per_technique"]["Doubt"]["recall"] == 0.0


def test_flc_merges_per_technique_as_si_does():
    # Doubt 0-2 and 2-10 only touch: two spans; Slogans 4-10 shares characters with Doubt 2-10 but is
    # another technique, so it stays apart. Gold Doubt 0-2 and Slogans 0-6.
    # P credit: Doubt 2/2 + 0/8, Slogans 2/6 (4-6 shared) -> 4/3 over 3 spans; R credit: 2/2 + 2/6 -> 4/3 over 2
    predicted = {"a": [(0, 2, "Doubt"), (2, 10, "Doubt"), (4, 10, "Slogans")]}
    gold = {"a": [(0, 2, "Doubt"), (0, 6, "Slogans")]}
    scores = flc_scores(predicted, gold)
    assert (scores["predicted_spans"], scores["gold_spans"]) == (3, 2)
    assert scores["precision"] == approx((4 / 3) / 3) and scores["recall"] == approx((4 / 3) / 2)
    doubt = scores["per_technique"]["Doubt"]
    assert (doubt["precision"], doubt["recall"]) == (approx(0.5), approx(1.0))


def test_flc_of_perfect_multi_technique_prediction_is_one():
    gold = {"a": [(0, 10, "Doubt"), (0, 10, "Slogans"), (20, 30, "Doubt")]}
    assert flc_scores(gold, gold)["f1"] == approx(1.0)
    assert flc_scores({}, gold)["f1"] == 0.0


def test_expected_calibration_error():
    assert expected_calibration_error([0.9, 0.9, 0.9, 0.9], [True, True, True, False]) == approx(0.15)
    assert expected_calibration_error([0.25, 0.75], [False, True]) == approx(0.25)
    assert expected_calibration_error([], []) == 0.0


@given(st.lists(st.tuples(st.integers(0, 60), st.integers(1, 15)), max_size=12),
       st.lists(st.tuples(st.integers(0, 60), st.integers(1, 15)), max_size=12))
def test_si_credit_is_the_definition_summed_over_every_pair(predicted, gold):
    system = merge_overlapping_spans([(start, start + length) for start, length in predicted])
    reference = merge_overlapping_spans([(start, start + length) for start, length in gold])
    # The definition: every (predicted, gold) pair, overlapping or not, in the order of the formula.
    precision_credit = sum(max(0, min(s_end, t_end) - max(s_start, t_start)) / (s_end - s_start)
                           for s_start, s_end in system for t_start, t_end in reference)
    recall_credit = sum(max(0, min(s_end, t_end) - max(s_start, t_start)) / (t_end - t_start)
                        for s_start, s_end in system for t_start, t_end in reference)
    scores = si_scores({"a": system}, {"a": reference})
    assert scores["precision"] == approx(precision_credit / len(system) if system else 0.0)
    assert scores["recall"] == approx(recall_credit / len(reference) if reference else 0.0)


def merge_by_shared_characters(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The official definition, literally: spans as sets of characters, any two sharing one united, until none do."""
    groups = [set(range(start, end)) for start, end in spans]
    merged = True
    while merged:
        merged = False
        for i, j in ((i, j) for i in range(len(groups)) for j in range(i + 1, len(groups))):
            if groups[i] & groups[j]:
                groups[i] |= groups.pop(j)
                merged = True
                break
    return sorted((min(group), max(group) + 1) for group in groups)


@given(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 8)), max_size=12))
def test_merge_is_the_official_one_on_character_sets(spans):
    spans = [(start, start + length) for start, length in spans]
    assert merge_overlapping_spans(spans) == merge_by_shared_characters(spans)


def test_span_shapes_count_edges_inside_words_sentence_ends_and_dangling_ends():
    from persuasion.eval.metrics import span_shapes

    text = "They are pro-terror thugs. They lie and cheat the voters of"
    spans = [(text.index("terror"), text.index(" thugs")),  # "terror": its start cuts "pro-terror"
             (text.index("thugs"), text.index(" lie")),  # "thugs. They": across a sentence end
             (text.index("lie"), text.index(" cheat")),  # "lie and": ends on a dangling "and"
             (text.index("cheat"), len(text)),  # "cheat the voters of": ends on "of"
             (text.index("cheat"), len(text))]  # the same span again (another technique): counted once
    shapes = span_shapes({"a": spans}, {"a": text})
    assert shapes == {"spans": 4, "edge_inside_word": 0.25, "crosses_sentence_end": 0.25,
                      "ends_on_function_word": 0.5, "median_characters": 9.0}
    assert span_shapes({"a": []}, {"a": text}) == {"spans": 0}


def interval_case(copies: int) -> tuple:
    """An article scored partly right (SI, TC and FLC), as many times as `copies`, under other ids."""
    si_predicted = {f"a{k}": [(0, 10), (30, 40)] for k in range(copies)}
    si_gold = {f"a{k}": [(5, 15), (30, 40), (50, 60)] for k in range(copies)}
    gold = {f"a{k}": [(5, 15, "Doubt"), (30, 40, "Slogans"), (50, 60, "Doubt")] for k in range(copies)}
    tc_predicted = {f"a{k}": [(5, 15, "Doubt"), (30, 40, "Doubt"), (50, 60, "Doubt")] for k in range(copies)}
    flc_predicted = {f"a{k}": [(0, 10, "Doubt"), (30, 40, "Slogans")] for k in range(copies)}
    return si_predicted, si_gold, tc_predicted, flc_predicted, gold


def test_intervals_of_identical_articles_collapse_onto_the_pooled_scores():
    # Every draw of identical articles scores as all of them do: the sums per draw must be the measures' own.
    si_predicted, si_gold, tc_predicted, flc_predicted, gold = interval_case(5)
    techniques = ["Doubt", "Slogans", "Loaded_Language"]
    parts = ArticleParts.of(si_predicted, si_gold, tc_predicted, flc_predicted, gold, techniques)
    intervals = article_intervals(parts, resamples=50)
    tc = tc_scores(tc_predicted, gold, techniques)
    expected = {"si_f1": si_scores(si_predicted, si_gold)["f1"], "tc_micro_f1": tc["micro_f1"],
                "tc_macro_f1": tc["macro_f1"], "flc_f1": flc_scores(flc_predicted, gold)["f1"]}
    assert 0 < expected["tc_macro_f1"] < expected["tc_micro_f1"] < 1  # Slogans is missed: macro < micro
    for name, value in expected.items():
        assert intervals[name] == [approx(value, abs=1e-4)] * 2, name
    assert (intervals["articles"], intervals["resamples"], intervals["level"]) == (5, 50, 0.95)


def test_intervals_hold_the_score_and_widen_as_articles_disagree():
    si_predicted, si_gold, tc_predicted, flc_predicted, gold = interval_case(10)
    for k in range(5):  # half the articles answered perfectly
        si_predicted[f"a{k}"] = si_gold[f"a{k}"]
        tc_predicted[f"a{k}"] = flc_predicted[f"a{k}"] = gold[f"a{k}"]
    parts = ArticleParts.of(si_predicted, si_gold, tc_predicted, flc_predicted, gold, ["Doubt", "Slogans"])
    intervals = article_intervals(parts)
    pooled = {"si_f1": si_scores(si_predicted, si_gold)["f1"], "tc_micro_f1": tc_scores(tc_predicted, gold)["micro_f1"],
              "flc_f1": flc_scores(flc_predicted, gold)["f1"]}
    for name, value in pooled.items():
        low, high = intervals[name]
        assert low < value < high and high - low > 0.05, name
    assert article_intervals(parts) == intervals  # seeded: a benchmark run repeats its intervals


def test_intervals_without_technique_gold_give_si_only():
    parts = ArticleParts.of({"a": [(0, 5)]}, {"a": [(0, 5)], "b": [(3, 9)]}, {}, {}, {}, ["Doubt"])
    intervals = article_intervals(parts)
    assert "tc_micro_f1" not in intervals and "flc_f1" not in intervals
    assert intervals["si_f1"][1] == approx(1.0)  # a draw of article a alone scores all it holds
