"""The demo judges: exact scores on hand-written responses, monotonicity, and robustness."""

import dataclasses

import pytest

from lambda_dpo.demo.dataset.judges import (
    ASPECTS,
    JUDGES,
    conciseness,
    constraint_credits,
    correctness,
    extract_numbers,
    informativeness,
    instruction_following,
    judge_all,
    to_score,
    word_budget,
)
from lambda_dpo.demo.dataset.prompts import LIST_CATEGORIES, TOPICS, PromptSpec


def spec(kind="instruction", category="topic", prompt="p", **kw):
    return PromptSpec(id="t-0001", kind=kind, category=category, prompt=prompt, **kw)


ARITH = spec("qa", "arithmetic", "What is 17 + 25?", answer="42", numeric_answer=42.0, context_numbers=(17.0, 25.0))
FIVE_KM = spec("qa", "unit_conversion", "How many meters are in 5 kilometers?", answer="5000",
               numeric_answer=5000.0, context_numbers=(1.0, 5.0, 1000.0))
PARIS = spec("qa", "fact", "What is the capital of France?", subject="France", answer="Paris",
             distractors=("Berlin", "Rome", "Madrid"))
SODIUM = spec("qa", "fact", "What is the chemical symbol for sodium?", subject="sodium", answer="Na",
              answer_case_sensitive=True, distractors=("Au", "Fe"))
PHOTO_TERMS = dict(TOPICS)["photosynthesis"]
PHOTO = spec("open", "topic", "Explain photosynthesis.", subject="photosynthesis", key_terms=PHOTO_TERMS)
FRUITS = spec("instruction", "list", "List exactly 3 fruits as bullet points.", subject="fruits",
              members=LIST_CATEGORIES["fruits"], constraints={"n_bullets": 3})


def distinct_words(n):
    return " ".join(f"word{i}" for i in range(n))


# ------------------------------------------------------------------------------------------ helpers


def test_to_score_mapping():
    assert [to_score(x) for x in (0, 0.12, 0.125, 0.25, 0.5, 2 / 3, 0.75, 1, 7)] == [1, 1, 2, 2, 3, 4, 4, 5, 5]


def test_extract_numbers_formats():
    vals = [v for _, v in extract_numbers("It is 1,000 or 1000.0, not 2 000; -5 and forty-two, eight.")]
    assert vals == [1000.0, 1000.0, 2.0, 0.0, -5.0, 42.0, 8.0]
    # list markers at line starts are not numbers
    assert [v for _, v in extract_numbers("1. Apple\n2. Pear costs 3")] == [3.0]


# ------------------------------------------------------------------------------------------ instruction_following


def test_exact_bullet_count_beats_wrong_count():
    s = spec(constraints={"n_bullets": 3})
    three = "- apples\n- pears\n- plums"
    five = "- apples\n- pears\n- plums\n- figs\n- kiwis"
    assert instruction_following(s, three) == 5
    assert instruction_following(s, five) == 1
    assert instruction_following(s, "* a\n• b\n+ c") == 5  # other bullet characters count too


def test_numbered_count():
    s = spec(constraints={"n_numbered": 2})
    assert instruction_following(s, "1. one thing\n2) another") == 5
    assert instruction_following(s, "1. one thing") == 1


def test_word_limits():
    assert instruction_following(spec(constraints={"max_words": 10}), distinct_words(10)) == 5
    assert instruction_following(spec(constraints={"max_words": 10}), distinct_words(11)) == 1
    assert instruction_following(spec(constraints={"min_words": 40}), distinct_words(40)) == 5
    assert instruction_following(spec(constraints={"min_words": 40}), distinct_words(39)) == 1


def test_partial_credit_is_mean_of_constraints():
    s = spec(constraints={"n_bullets": 3, "lowercase": True})
    assert instruction_following(s, "- Apples\n- pears\n- plums") == 3  # 1 of 2 met -> 0.5 -> 3
    assert instruction_following(s, "- apples\n- pears\n- plums") == 5
    kw = spec(constraints={"keywords": ("sunlight", "oxygen")})
    assert instruction_following(kw, "Plants need sunlight.") == 3
    assert instruction_following(kw, "Plants need SUNLIGHT and release oxygen.") == 5
    assert instruction_following(kw, "Plants grow.") == 1


def test_case_question_start_commas_sentences():
    assert instruction_following(spec(constraints={"lowercase": True}), "all lower case here.") == 5
    assert instruction_following(spec(constraints={"lowercase": True}), "Not lower.") == 1
    assert instruction_following(spec(constraints={"lowercase": True}), "123 ...") == 1  # no letter at all
    assert instruction_following(spec(constraints={"uppercase": True}), "ALL CAPS, 42!") == 5
    assert instruction_following(spec(constraints={"uppercase": True}), "ALL CAPs") == 1
    assert instruction_following(spec(constraints={"end_with_question": True}), "Nice. Is it?") == 5
    assert instruction_following(spec(constraints={"end_with_question": True}), "Is it?** ") == 5
    assert instruction_following(spec(constraints={"end_with_question": True}), "Is it? Yes.") == 1
    assert instruction_following(spec(constraints={"start_with": "Sure"}), "**Sure**, here it is.") == 5
    assert instruction_following(spec(constraints={"start_with": "Sure"}), "sure thing") == 5
    assert instruction_following(spec(constraints={"start_with": "Sure"}), "Okay, sure.") == 1
    assert instruction_following(spec(constraints={"no_commas": True}), "No commas here.") == 5
    assert instruction_following(spec(constraints={"no_commas": True}), "Yes, one.") == 1
    assert instruction_following(spec(constraints={"max_sentences": 1}), "Just one sentence.") == 5
    assert instruction_following(spec(constraints={"max_sentences": 1}), "One. Two.") == 1


def test_json_object_with_keys():
    s = spec(constraints={"json_keys": ("answer", "explanation")})
    assert instruction_following(s, '{"answer": "42", "explanation": "6 * 7"}') == 5
    assert instruction_following(s, '```json\n{"answer": 42, "explanation": "x"}\n```') == 5
    assert instruction_following(s, '{"answer": 42}') == 3  # an object, a key missing: credit 0.5
    assert instruction_following(s, '[1, 2]') == 1
    assert instruction_following(s, 'The answer is {"answer": 42, "explanation": "x"}') == 1
    assert instruction_following(s, "[" * 100_000) == 1  # too deep for the parser: not JSON, no crash


def test_implicit_constraints_without_spec_constraints():
    assert constraint_credits(ARITH, "42.") == {"answers": 1.0, "finishes": 1.0, "no_loop": 1.0}
    assert instruction_following(ARITH, "42.") == 5
    assert instruction_following(ARITH, "17 + 25 is") == 2  # only no_loop holds: 1/3 -> 2
    assert instruction_following(PARIS, "It is Berlin.") == 5  # an answer of the asked type (wrong: correctness)
    assert instruction_following(PARIS, "I like France") == 2  # no candidate named, not finished
    assert instruction_following(PHOTO, "Plants use sunlight to make food, and they grow") == 4  # not finished
    loop = "Plants use sunlight to grow. Plants use sunlight to grow."
    assert constraint_credits(PHOTO, loop)["no_loop"] == 0.0
    assert instruction_following(PHOTO, loop) == 4
    assert instruction_following(dataclasses.replace(FRUITS, constraints={}), "- apple\n- pear") == 5


# ------------------------------------------------------------------------------------------ correctness


@pytest.mark.parametrize("response,score", [
    ("42", 5),
    ("17 + 25 = 42.", 5),  # operands are context, not contradictions
    ("The answer is forty-two.", 5),
    ("42, or maybe 43.", 4),
    ("It is 41. No wait, 42.", 3),
    ("I do not know.", 2),
    ("17 + 25 = 41", 1),
])
def test_correctness_numeric(response, score):
    assert correctness(ARITH, response) == score


@pytest.mark.parametrize("response", ["5000", "5,000", "5000.0", "5,000.00 meters", "It is 5000.",
                                      "1 km = 1,000 m, so 5 km = 5,000 m."])
def test_correctness_number_formatting(response):
    assert correctness(FIVE_KM, response) == 5


@pytest.mark.parametrize("response,score", [
    ("Paris.", 5),
    ("The capital of France is paris", 5),  # case-insensitive for names
    ("Paris, not Berlin.", 4),
    ("Berlin? No: Paris.", 3),
    ("Lyon.", 2),  # not a known distractor: no answer given
    ("Berlin.", 1),
    ("Parisian food is nice.", 2),  # whole-word match only
])
def test_correctness_facts(response, score):
    assert correctness(PARIS, response) == score


def test_correctness_case_sensitive_symbol():
    assert correctness(SODIUM, "The symbol is Na.") == 5
    assert correctness(SODIUM, "na na na") == 2
    assert correctness(SODIUM, "It is Fe.") == 1


def test_correctness_list_members():
    assert correctness(FRUITS, "- Apple\n- Banana\n- Cherry") == 5
    assert correctness(FRUITS, "- Apple\n- Banana\n- Car") == 4  # 2/3 -> 4
    assert correctness(FRUITS, "- Apple\n- Apple\n- Apple") == 2  # a member counts once: 1/3 -> 2
    assert correctness(FRUITS, "- Strawberries: red\n- Mangoes") == 5  # stems and plurals
    assert correctness(FRUITS, "apples, bananas and cherries") == 5  # no list lines: split on , and
    assert correctness(FRUITS, "- Car\n- Bus") == 1


def test_correctness_without_known_answer():
    assert correctness(PHOTO, "Photosynthesis makes sugar.") == 3
    assert correctness(PHOTO, "Plants make 6 + 6 = 12 sugars.") == 3  # a right equation changes nothing
    assert correctness(PHOTO, "Plants make 2 + 2 = 5 sugars.") == 2


# ------------------------------------------------------------------------------------------ conciseness


def test_conciseness_bands():
    assert word_budget(ARITH) == 25 and word_budget(PHOTO) == 50
    assert word_budget(spec(constraints={"max_words": 15})) == 15
    assert [conciseness(ARITH, distinct_words(n)) for n in (1, 25, 26, 37, 38, 50, 51, 75, 76, 500)] == \
        [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]


def test_conciseness_decreases_with_length():
    scores = [conciseness(PHOTO, distinct_words(n)) for n in range(1, 300, 7)]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == 5 and scores[-1] == 1


def test_conciseness_repetition_penalty():
    assert conciseness(ARITH, distinct_words(12)) == 5
    assert conciseness(ARITH, "the cat sat " * 4) == 3  # 12 words, 3-grams 70% repeated: -2
    assert conciseness(ARITH, "a b c d e f g h a b c") == 5  # 1 of 9 3-grams repeated (11% < 20%)
    assert conciseness(ARITH, "a b c d e f a b c d") == 4  # 3 of 8 repeated (38%): -1


# ------------------------------------------------------------------------------------------ informativeness


def test_informativeness_increases_with_key_term_coverage():
    texts = [
        "Plants are green.",
        "Plants use sunlight.",
        "Plants use sunlight and chlorophyll.",
        "Plants use sunlight, chlorophyll and carbon dioxide.",
        "Plants use sunlight, chlorophyll and carbon dioxide to make glucose.",
        "Plants use sunlight, chlorophyll and carbon dioxide to make glucose and oxygen.",
    ]
    scores = [informativeness(PHOTO, t) for t in texts]
    assert scores == sorted(scores)
    assert scores[0] == 1 and scores[-1] == 4
    # full coverage (0.6) + 8 content words of 50 (0.4 * 0.16): 0.664 -> 4
    assert informativeness(PHOTO, texts[-1]) == 4


def test_informativeness_length_for_questions():
    assert informativeness(PARIS, "Paris") == 1
    assert informativeness(PARIS, "Paris. " + distinct_words(12)) == 3  # 13 content words of 25 -> 0.52 -> 3
    assert informativeness(PARIS, "Paris. " + distinct_words(40)) == 5
    scores = [informativeness(PARIS, distinct_words(n)) for n in range(0, 40, 3)]
    assert scores == sorted(scores)


def test_stopwords_and_repeats_do_not_inform():
    assert informativeness(PARIS, "the and of it is " * 20) == 1
    assert informativeness(PARIS, "Paris " * 200) == 1


def test_conciseness_and_informativeness_conflict():
    short, long_ = "Paris.", "Paris. " + distinct_words(70)
    assert conciseness(PARIS, short) > conciseness(PARIS, long_)
    assert informativeness(PARIS, short) < informativeness(PARIS, long_)


# ------------------------------------------------------------------------------------------ all judges


WEIRD = ["", "   \n\t", "!!!", "日本語のテキストです。", "🙂" * 1000, "word " * 100_000, "\x00\x01", "{" * 5000,
         "[" * 100_000, "- \n- \n-", "1. \n2.", "Ünïcödé wörds ärë wörds?", "٣ + ٤ = ٧", "∞ " * 100]


@pytest.mark.parametrize("text", WEIRD, ids=range(len(WEIRD)))
@pytest.mark.parametrize("s", [ARITH, PARIS, SODIUM, PHOTO, FRUITS,
                               spec(constraints={"json_keys": ("a", "b"), "keywords": ("x",), "max_words": 3})],
                         ids=["arith", "fact", "symbol", "topic", "list", "constrained"])
def test_scores_are_ints_in_range(s, text):
    for aspect, value in judge_all(s, text).items():
        assert type(value) is int and 1 <= value <= 5, (aspect, value)


def test_no_words_scores_one_everywhere():
    for text in ("", "  ", "...", "?!"):
        assert set(judge_all(PHOTO, text).values()) == {1}


def test_judge_all_accepts_spec_dicts_and_is_deterministic():
    text = "Plants use sunlight and chlorophyll. They release oxygen!"
    assert set(JUDGES) == set(ASPECTS)
    assert judge_all(PHOTO, text) == judge_all(PHOTO.to_dict(), text) == judge_all(PHOTO, text)
    with pytest.raises(TypeError):
        judge_all("not a spec", text)
    with pytest.raises(TypeError):
        judge_all(PHOTO, 42)


def test_random_text_property():
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    @hypothesis.settings(max_examples=150, deadline=None)
    @hypothesis.given(st.text(max_size=300), st.sampled_from([ARITH, PARIS, SODIUM, PHOTO, FRUITS]))
    def check(text, s):
        for v in judge_all(s, text).values():
            assert type(v) is int and 1 <= v <= 5

    check()
