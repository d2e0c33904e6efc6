"""The steering protocol (evaluation.protocol), the length judges and per-prompt lambdas in generate.

Everything but the last tests runs on stub generators and judges with hand-computed values."""

import itertools
import math

import pytest

from lambda_dpo.conditioning import attach_lambda_embedding
from lambda_dpo.evaluation.judges import LengthJudge, content_words, words
from lambda_dpo.evaluation.protocol import (DEFAULT_WEIGHTS, edge_lambda, hypervolume, pick_examples,
                                            single_point, steerability, sweep_edge, unseen_weights, vertex_matrix)
from lambda_dpo.generation import SteerableModel, generate, steered_prompt_ids
from lambda_dpo.testing import gpt2_tokenizer, tiny_model

NAN = float("nan")
ASPECTS = ("conciseness", "informativeness", "honesty")
PAIR = ("conciseness", "informativeness")  # w is informativeness's weight: words up, conciseness down
PROMPTS, RECORDS = ["p0", "p1"], ["r0", "r1"]


def stub(length, calls=None):
    """A generator whose reply to (prompt, lam) is length(prompt, lam) distinct content words."""
    def generate(prompts, lams):
        if calls is not None:
            calls.append((list(prompts), list(lams)))
        return [" ".join(f"t{i:03d}" for i in range(length(p, lam))) for p, lam in zip(prompts, lams)]
    return generate


def by_w(length_of_w):
    """length(prompt, lam) = length_of_w(w) + the prompt's index (p0: +0, p1: +1)."""
    return lambda p, lam: length_of_w(lam["informativeness"]) + int(p[1])


def edge(w):
    return {"conciseness": 1.0 - w, "informativeness": w, "honesty": 0.0}


def run_sweep(length, weights=DEFAULT_WEIGHTS, judge=LengthJudge()):
    return sweep_edge(stub(length), PROMPTS, RECORDS, judge, ASPECTS, PAIR, weights)


STAIRCASE = [(5, 2), (4, 3), (3, 4), (2, 5)]  # columns of width 1 over x in [1, 5]: heights 4, 3, 2, 1


@pytest.mark.parametrize("points, ref, area", [
    ([(3, 2)], (1, 1), 2.0),
    ([(3, 2), (2, 3)], (1, 1), 3.0),  # 2 + 2 - 1 overlap
    ([(3, 2), (2, 3), (2, 2), (1.5, 1.5)], (1, 1), 3.0),  # dominated points
    ([(3, 2), (3, 2)], (1, 1), 2.0),  # duplicate
    ([(3, 2), (3, 4)], (1, 1), 6.0),  # same x: the higher y covers the lower
    ([(2, 3), (4, 3)], (1, 1), 6.0),  # same y: the larger x covers the smaller
    ([(0.5, 5)], (1, 1), 0.0), ([(1, 5)], (1, 1), 0.0), ([(5, 1)], (1, 1), 0.0),  # at or below ref on one axis
    ([(-3, -3), (0, 10), (10, 0)], (1, 1), 0.0),  # never negative
    ([(3, 2), (0, 10), (10, 1)], (1, 1), 2.0),
    ([], (1, 1), 0.0),
    ([(NAN, 5), (3, 2), (4, NAN), (None, 3)], (1, 1), 2.0),  # NaN / None coordinates skipped
    ([(3, 2)], (0, 0), 6.0), ([(3, 2), (2, 3)], (0, 0), 8.0), ([(3, 2)], (2.5, 1.5), 0.25),  # other refs
    (STAIRCASE, (1, 1), 4 + 3 + 2 + 1),
], ids=["one_point", "two_non_dominated", "dominated", "duplicate", "same_x", "same_y", "left_of_ref", "on_ref_x",
        "on_ref_y", "below_ref_not_negative", "below_ref_ignored", "empty", "nan_skipped", "ref_origin",
        "ref_origin_two", "ref_shifted", "staircase"])
def test_hypervolume_hand_computed(points, ref, area):
    assert hypervolume(points, ref) == area


def test_hypervolume_does_not_depend_on_input_order():
    for order in itertools.permutations(STAIRCASE + [(2, 2)]):
        assert hypervolume(list(order)) == 10.0


def test_edge_lambda_weights():
    assert edge_lambda(ASPECTS, ("conciseness", "honesty"), 0.25) == {
        "conciseness": 0.75, "informativeness": 0.0, "honesty": 0.25}
    for w in (0.0, 0.1, 0.5, 1.0):
        point = edge_lambda(ASPECTS, PAIR, w)
        assert sum(point.values()) == pytest.approx(1.0) and point["honesty"] == 0.0


@pytest.mark.parametrize("pair, w", [(("conciseness", "style"), 0.5), (("honesty", "honesty"), 0.5),
                                     (PAIR, -0.1), (PAIR, 1.1)])
def test_edge_lambda_errors(pair, w):
    with pytest.raises(ValueError):
        edge_lambda(ASPECTS, pair, w)


def test_sweep_edge_one_weight_major_call_and_shapes():
    calls, seen = [], []

    def judge(record, reply):
        seen.append(record)
        return LengthJudge()(record, reply)

    out = sweep_edge(stub(by_w(lambda w: 5 + round(100 * w)), calls), PROMPTS, RECORDS, judge, ASPECTS, PAIR,
                     (0.0, 0.5, 1.0))
    assert calls == [(["p0", "p1"] * 3, [edge(0.0), edge(0.0), edge(0.5), edge(0.5), edge(1.0), edge(1.0)])]
    assert seen == RECORDS * 3
    assert out["pair"] == list(PAIR) and out["weights"] == [0.0, 0.5, 1.0]
    assert [len(row) for row in out["replies"]] == [2, 2, 2]
    assert out["words"] == [[5, 6], [55, 56], [105, 106]]
    assert out["mean_words"] == [5.5, 55.5, 105.5]
    assert set(out["scores"]) == set(PAIR)
    # conciseness 5 - 4 (n - 20) / 100 past 20 words; informativeness 1 + 4 min(1, n / 50)
    assert [x for row in out["scores"]["conciseness"] for x in row] == pytest.approx([5, 5, 3.6, 3.56, 1.6, 1.56])
    assert out["means"]["conciseness"] == pytest.approx([5, 3.58, 1.58])
    assert out["means"]["informativeness"] == pytest.approx([1.44, 5, 5])


@pytest.mark.parametrize("weights", [(0.5,), (0.5, 0.5), (0.0, 0.6, 0.4)])
def test_sweep_edge_rejects_non_increasing_weights(weights):
    with pytest.raises(ValueError, match="strictly increasing"):
        run_sweep(by_w(lambda w: 5), weights)


def test_sweep_edge_rejects_mismatched_records_and_wrong_reply_count():
    gen = stub(lambda p, lam: 5)
    with pytest.raises(ValueError, match="records"):
        sweep_edge(gen, PROMPTS, RECORDS[:1], LengthJudge(), ASPECTS, PAIR)
    with pytest.raises(ValueError, match="records"):
        sweep_edge(gen, [], [], LengthJudge(), ASPECTS, PAIR)
    with pytest.raises(ValueError, match="returned 17 replies for 18"):
        sweep_edge(lambda p, l: gen(p, l)[1:], PROMPTS, RECORDS, LengthJudge(), ASPECTS, PAIR)


def test_sweep_edge_missing_scores_are_nan_and_skipped_in_means():
    def judge(record, reply):
        scores = LengthJudge()(record, reply)
        if record == "r1":
            del scores["informativeness"]
            scores["conciseness"] = None
        return scores

    out = run_sweep(by_w(lambda w: 10 + round(20 * w)), (0.0, 1.0), judge)  # p0: 10 and 30 words
    assert math.isnan(out["scores"]["informativeness"][0][1]) and math.isnan(out["scores"]["conciseness"][1][1])
    assert out["means"]["informativeness"] == pytest.approx([1.8, 3.4])
    assert out["means"]["conciseness"] == pytest.approx([5.0, 4.6])


def monotone(w):  # 21..49 words: inside both judges' linear ranges, strictly increasing over DEFAULT_WEIGHTS
    return 21 + round(28 * w)


def test_steerability_perfectly_monotone_sweep():
    sweep = run_sweep(by_w(monotone))
    s = steerability(sweep)
    assert s["spearman"] == pytest.approx({"words": 1.0, "informativeness": 1.0, "conciseness": -1.0})
    for k in ("words", *PAIR):
        assert s["adjacent"][k] == {"right": 1.0, "still": 0.0, "wrong": 0.0}
        assert s["adjacent_means"][k] == 1.0
    assert s["front"] == list(zip(sweep["means"]["conciseness"], sweep["means"]["informativeness"]))
    assert s["hypervolume"] == hypervolume(s["front"]) > hypervolume([s["front"][0]])
    assert s["end_ratio_words"] == pytest.approx((49 + 50) / (21 + 22))


def test_steerability_constant_generator_is_one_point():
    s = steerability(run_sweep(lambda p, lam: 30))
    assert s["spearman"] == {"words": 0.0, "conciseness": 0.0, "informativeness": 0.0}  # not NaN
    for k in ("words", *PAIR):
        assert s["adjacent"][k] == {"right": 0.0, "still": 1.0, "wrong": 0.0}
        assert s["adjacent_means"][k] == 0.0
    assert len(s["front"]) == len(DEFAULT_WEIGHTS) and set(s["front"]) == {s["front"][0]}
    assert s["front"][0] == pytest.approx((4.6, 3.4))
    assert s["hypervolume"] == pytest.approx(hypervolume([(4.6, 3.4)])) == pytest.approx(3.6 * 2.4)
    assert s["end_ratio_words"] == 1.0


def test_steerability_reversed_sweep_is_negative():
    s = steerability(run_sweep(by_w(lambda w: 49 - round(28 * w))))
    assert s["spearman"] == pytest.approx({"words": -1.0, "informativeness": -1.0, "conciseness": 1.0})
    for k in ("words", *PAIR):
        assert s["adjacent"][k]["wrong"] == 1.0 and s["adjacent_means"][k] == 0.0
    assert s["end_ratio_words"] < 1


def test_steerability_non_monotone_sweep_hand_counted():
    table = {"p0": [30, 35, 35, 32, 40], "p1": [30, 30, 31, 32, 33]}  # p0: up still down up; p1: still up up up
    weights = (0.0, 0.25, 0.5, 0.75, 1.0)
    s = steerability(run_sweep(lambda p, lam: table[p][weights.index(lam["informativeness"])], weights))
    for k in ("words", *PAIR):  # 21..49 words: both judges move strictly with the length
        assert s["adjacent"][k] == {"right": 5 / 8, "still": 2 / 8, "wrong": 1 / 8}
        assert s["adjacent_means"][k] == 3 / 4  # mean words 30, 32.5, 33, 32, 36.5
    # rho(p0) = 6.5 / sqrt(95) (ranks 1, 3.5, 3.5, 2, 5), rho(p1) = 9.5 / sqrt(95) (ranks 1.5, 1.5, 3, 4, 5)
    assert s["spearman"]["words"] == pytest.approx(8 / math.sqrt(95))
    assert s["spearman"]["conciseness"] == pytest.approx(-8 / math.sqrt(95))
    assert s["end_ratio_words"] == pytest.approx(36.5 / 30)


def test_steerability_end_ratio_from_empty_replies():
    s = steerability(run_sweep(lambda p, lam: 10 * round(lam["informativeness"]), (0.0, 1.0)))
    assert s["end_ratio_words"] == math.inf
    assert math.isnan(steerability(run_sweep(lambda p, lam: 0, (0.0, 1.0)))["end_ratio_words"])


def test_steerability_needs_both_pair_aspects():
    sweep = run_sweep(by_w(monotone), judge=lambda r, y: {"conciseness": 3.0})
    with pytest.raises(ValueError, match="informativeness"):
        steerability(sweep)


def hand_sweep(a, b, words_, weights=DEFAULT_WEIGHTS):
    return {"pair": list(PAIR), "weights": list(weights), "mean_words": words_,
            "means": {"conciseness": a, "informativeness": b}}


def test_unseen_weights_linear_sweep_is_on_front():
    ws = DEFAULT_WEIGHTS
    sweep = hand_sweep([5 - 4 * w for w in ws], [1 + 4 * w for w in ws], [10 + 100 * w for w in ws])
    rows = unseen_weights(sweep, 0.25)
    assert [r["w"] for r in rows] == [0.1, 0.4, 0.6, 0.9]
    assert [r["neighbours"] for r in rows] == [[0.0, 0.25], [0.25, 0.5], [0.5, 0.75], [0.75, 1.0]]
    for r in rows:
        assert r["shortfall"] == pytest.approx(0.0, abs=1e-12) and r["on_front"] and r["between"]
        assert r["words"]["interpolated"] == pytest.approx(r["words"]["value"])


# seen weights 0, .25, .5, .75, 1: a = 5, 4, 3, 2, 1 and b = 1..5; each unseen weight copies its lower neighbour
STAIR_A = [5, 5, 4, 4, 3, 3, 2, 2, 1]
STAIR_B = [1, 1, 2, 2, 3, 3, 4, 4, 5]


def test_unseen_weights_staircase_is_between_but_short():
    rows = unseen_weights(hand_sweep(STAIR_A, STAIR_B, STAIR_B), 0.25)
    assert all(r["between"] for r in rows)
    # b's interpolation at 0.1: 1.4, value 1 -> 1 - 0 / 0.4; at 0.4: 2.6 vs 2 -> 1 - 1 / 1.6;
    # at 0.6: 3.4 vs 3 -> 1 - 2 / 2.4; at 0.9: 4.6 vs 4 -> 1 - 3 / 3.6 (a is above its interpolation)
    assert [r["shortfall"] for r in rows] == pytest.approx([1.0, 0.375, 1 / 6, 1 / 6])
    assert [r["on_front"] for r in rows] == [False] * 4
    assert rows[1]["informativeness"] == pytest.approx({"value": 2, "interpolated": 2.6})


def test_unseen_weights_point_outside_neighbours_is_not_between():
    a = list(STAIR_A)
    a[3] = 4.5  # w = 0.4, neighbours 4 and 3
    rows = unseen_weights(hand_sweep(a, STAIR_B, STAIR_B), 0.25)
    assert [r["between"] for r in rows] == [True, False, True, True]


def test_unseen_weights_without_a_seen_neighbour_are_left_out():
    ws = (0.1, 0.25, 0.4, 0.5, 0.9)
    rows = unseen_weights(hand_sweep([3.0] * 5, [3.0] * 5, [30.0] * 5, ws), 0.25)
    assert [(r["w"], r["neighbours"]) for r in rows] == [(0.4, [0.25, 0.5])]


def vertex_stub(names, calls):
    """Reply at vertex k: names[k]; the judge scores aspect j 5 if the reply names it, 2 otherwise."""
    def generate(prompts, lams):
        calls.append((list(prompts), list(lams)))
        return [names[max(v, key=v.get)] for v in lams]
    return generate


def name_judge(record, reply):
    return {j: 5.0 if j in reply.split() else 2.0 for j in ASPECTS}


def test_vertex_matrix_diagonal_is_column_max():
    calls = []
    out = vertex_matrix(vertex_stub({k: k for k in ASPECTS}, calls), PROMPTS, RECORDS, name_judge, ASPECTS)
    e = [{a: float(a == k) for a in ASPECTS} for k in ASPECTS]
    assert calls == [(PROMPTS * 3, [e[0], e[0], e[1], e[1], e[2], e[2]])]
    assert out["matrix"] == {k: {j: 5.0 if j == k else 2.0 for j in ASPECTS} for k in ASPECTS}
    assert out["diagonal_is_column_max"] == {k: True for k in ASPECTS}
    assert out["replies"] == {k: [k, k] for k in ASPECTS}


def test_vertex_matrix_flags_a_vertex_that_does_not_raise_its_aspect():
    names = {"conciseness": "conciseness informativeness", "informativeness": "", "honesty": "honesty"}
    out = vertex_matrix(vertex_stub(names, []), PROMPTS, RECORDS, name_judge, ASPECTS)
    assert out["matrix"]["informativeness"]["informativeness"] == 2.0
    assert out["diagonal_is_column_max"] == {"conciseness": True, "informativeness": False, "honesty": True}


def test_single_point_no_lambda_by_default():
    calls = []
    out = single_point(stub(lambda p, lam: {"p0": 30, "p1": 40}[p], calls), PROMPTS, RECORDS, LengthJudge(), PAIR)
    assert calls == [(PROMPTS, [None, None])]
    assert out["point"] == pytest.approx((4.4, 3.8))  # conciseness 4.6, 4.2; informativeness 3.4, 4.2
    assert out["mean_words"] == 35.0
    assert out["hypervolume"] == pytest.approx(3.4 * 2.8)
    calls.clear()
    single_point(stub(lambda p, lam: 5, calls), PROMPTS, RECORDS, LengthJudge(), PAIR, lam=edge(0.5))
    assert calls[0][1] == [edge(0.5)] * 2


def word_sweep(changes):
    return {"words": [[100] * len(changes), [100 + c for c in changes]]}


def test_pick_examples_quantile_rule():
    sweep = word_sweep([5, -2, 10, 0, 7, 3, 3, 12, 1])  # sorted by (change, index): 1 3 8 5 6 0 4 2 7
    assert pick_examples(sweep) == [8, 6, 4]  # positions 2, 4, 6
    assert pick_examples(sweep, (0.0, 0.375, 1.0)) == [1, 5, 7]  # the tie at change 3: index 5 before 6


def test_pick_examples_no_duplicates_with_few_prompts():
    assert pick_examples(word_sweep([3, 1])) == [1, 0]
    assert pick_examples(word_sweep([4])) == [0]


@pytest.mark.parametrize("q", [-0.1, 1.5])
def test_pick_examples_rejects_quantile_outside_unit_interval(q):
    with pytest.raises(ValueError, match="outside"):
        pick_examples(word_sweep([1, 2, 3]), (0.5, q))


def distinct(n):
    return " ".join(f"t{i:03d}" for i in range(n))


def test_length_judge_conciseness_is_linear_between_budgets():
    judge = LengthJudge()
    got = {n: judge(None, distinct(n))["conciseness"] for n in (0, 20, 21, 70, 120, 200)}
    assert got == pytest.approx({0: 5.0, 20: 5.0, 21: 4.96, 70: 3.0, 120: 1.0, 200: 1.0})


def test_length_judge_informativeness_counts_distinct_content_words():
    judge = LengthJudge()
    score = lambda text: judge(None, text)["informativeness"]
    assert score("") == 1.0
    assert score(distinct(25)) == pytest.approx(3.0) and score(distinct(50)) == score(distinct(80)) == 5.0
    assert score("the and about because would") == 1.0  # stop words
    assert score("apple Apple APPLE apple banana") == pytest.approx(1 + 4 * 2 / 50)
    assert score("123 4567 2024 ox ax") == 1.0  # digits only, shorter than 3 characters
    assert LengthJudge(cap=2, informativeness="info")(None, "apple pear fig kiwi") == {"conciseness": 5.0, "info": 5.0}


def test_words_and_content_words():
    assert words("It's a well-known fact: 42 cats_dogs.") == ["It's", "a", "well-known", "fact", "42", "cats", "dogs"]
    assert content_words("The Apples, the apples and 2024 a1b2 x") == {"apples", "a1b2"}


@pytest.mark.parametrize("kwargs", [{"short": -1}, {"short": 10, "long": 10}, {"short": 30, "long": 20}, {"cap": 0}])
def test_length_judge_rejects_bad_budgets(kwargs):
    with pytest.raises(ValueError, match="LengthJudge needs"):
        LengthJudge(**kwargs)


@pytest.fixture(scope="module")
def tiny_steerable():
    tok = gpt2_tokenizer()

    def build(conditioning):
        model = tiny_model("llama", vocab_size=len(tok)).eval()
        if conditioning == "embedding":
            attach_lambda_embedding(model, tok, 3, instructions=["Answer briefly.", "Give detail.", "Be exact."])
        return SteerableModel(model, tok, ASPECTS, conditioning)
    return build


@pytest.mark.parametrize("conditioning", ["prompt", "embedding"])
def test_generate_per_prompt_lambdas_match_separate_calls(tiny_steerable, one_thread, conditioning):
    sm = tiny_steerable(conditioning)
    prompts = ["hi", "What is the capital of France, and why?"]
    la, lb = {"conciseness": 1.0}, {"informativeness": 0.25, "honesty": 0.75}
    alone = [generate(sm, [prompts[0]], la, max_new_tokens=6)[0], generate(sm, [prompts[1]], lb, max_new_tokens=6)[0]]
    assert generate(sm, prompts[:1], lb, max_new_tokens=6)[0] != alone[0]  # lambda changes the reply
    for batch_size in (1, 2):
        assert generate(sm, prompts, [la, lb], max_new_tokens=6, batch_size=batch_size) == alone
        assert generate(sm, prompts, (la, lb), max_new_tokens=6, batch_size=batch_size) == alone
    if conditioning == "prompt":
        assert steered_prompt_ids(sm, prompts[0], la) != steered_prompt_ids(sm, prompts[0], lb)
    with pytest.raises(ValueError, match="3 lambdas for 2 prompts"):
        generate(sm, prompts, [la, lb, la], max_new_tokens=2)


def test_vertex_matrix_and_single_point_need_one_record_per_prompt():
    from lambda_dpo.evaluation.protocol import single_point, vertex_matrix

    def gen(prompts, lams):
        return ["x"] * len(prompts)

    judge = LengthJudge()
    with pytest.raises(ValueError, match="as many records as prompts"):
        vertex_matrix(gen, ["p0", "p1"], ["r0"], judge, ("conciseness", "informativeness"))
    with pytest.raises(ValueError, match="at least one"):
        single_point(gen, [], [], judge, ("conciseness", "informativeness"))
