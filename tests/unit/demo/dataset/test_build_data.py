"""The demo dataset: prompt generation, known answers, the shipped files, and a tiny end-to-end build."""

import json
import math
import re
from collections import Counter
from pathlib import Path

import pytest

from lambda_dpo.data import load_lists
from lambda_dpo.demo.dataset import demo_data_dir
from lambda_dpo.demo.dataset.build import build_demo_dataset, main, rejudge, spearman
from lambda_dpo.demo.dataset.judges import ASPECTS, judge_all
from lambda_dpo.demo.dataset.prompts import (
    CAPITALS,
    LIST_CATEGORIES,
    PLANETS,
    SYMBOLS,
    TOPICS,
    UNIT_CONVERSIONS,
    PromptSpec,
    generate_prompts,
    split_prompts,
)

SHIPPED = Path(str(demo_data_dir()))


# ------------------------------------------------------------------------------------------ prompts


def test_generation_is_deterministic_under_a_seed():
    a, b, c = generate_prompts(0, 320), generate_prompts(0, 320), generate_prompts(1, 320)
    assert a == b
    assert [s.prompt for s in a] != [s.prompt for s in c]
    assert len({s.prompt for s in a}) == 320  # distinct texts
    assert len({s.id for s in a}) == 320
    kinds = Counter(s.kind for s in a)
    assert kinds == {"qa": 112, "open": 96, "instruction": 112}
    assert {s.category for s in a} == {"arithmetic", "unit_conversion", "fact", "topic", "list"}


def test_split_is_disjoint_stratified_and_seeded():
    specs = generate_prompts(0, 320)
    train, held = split_prompts(specs, 40, seed=0)
    assert len(train) == 280 and len(held) == 40
    assert not {s.prompt for s in train} & {s.prompt for s in held}
    assert Counter(s.kind for s in held) == {"qa": 14, "open": 12, "instruction": 14}
    assert split_prompts(specs, 40, seed=0) == (train, held)
    assert split_prompts(specs, 40, seed=1)[1] != held
    with pytest.raises(ValueError):
        split_prompts(specs, 321)


def test_spec_json_round_trip():
    for s in generate_prompts(3, 200):
        d = json.loads(json.dumps(s.to_dict()))
        assert PromptSpec.from_dict(d) == s


_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b}
_ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth"]
# an independent spot check of the tables (not read from the module)
_KNOWN = {"What is the capital of France?": "Paris", "What is the capital of Japan?": "Tokyo",
          "What is the chemical symbol for gold?": "Au", "What is the chemical symbol for sodium?": "Na",
          "Which planet is third from the Sun?": "Earth", "Which planet is sixth from the Sun?": "Saturn",
          "How many legs does a spider have?": "8", "Who wrote Romeo and Juliet?": "Shakespeare"}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_known_answer_is_right(seed):
    specs = generate_prompts(seed, 600)
    seen_known = 0
    for s in specs:
        numbers_in_prompt = [float(x) for x in re.findall(r"\d+", s.prompt)]
        if s.category in ("arithmetic", "unit_conversion"):
            a, op, b = s.expression.split()
            value = _OPS[op](int(a), int(b))
            assert s.numeric_answer == value and float(s.answer) == value, s
            if s.category == "arithmetic":
                assert {float(a), float(b)} <= set(numbers_in_prompt), s
            else:
                assert float(a) in numbers_in_prompt and op == "*", s
                assert any(int(b) == f and re.search(rf"\b{src}\b", s.prompt) and re.search(rf"\b{dst}\b", s.prompt)
                           for src, dst, f in UNIT_CONVERSIONS), s
            assert value not in numbers_in_prompt, s  # echoing the prompt is never right
            assert not any(math.isclose(value, c) for c in s.context_numbers), s
        elif s.category == "fact":
            base = s.prompt.split("? ")[0].rstrip("?") + "?"
            m = re.match(r"What is the capital of (.+)\?$", base)
            if m:
                assert s.answer == CAPITALS[m.group(1)]
            m = re.match(r"What is the chemical symbol for (.+)\?$", base)
            if m:
                assert s.answer == SYMBOLS[m.group(1)] and s.answer_case_sensitive
            m = re.match(r"Which planet is (\w+) from the Sun\?$", base)
            if m:
                assert s.answer == PLANETS[_ORDINALS.index(m.group(1))]
            if base in _KNOWN:
                seen_known += 1
                assert s.answer == _KNOWN[base]
            assert s.answer not in s.distractors
            if s.numeric_answer is not None:
                assert float(s.answer) == s.numeric_answer
        elif s.category == "topic":
            assert dict(TOPICS)[s.subject] == s.key_terms and 4 <= len(s.key_terms) <= 6
            assert s.answer is None
        elif s.category == "list":
            assert s.members == LIST_CATEGORIES[s.subject]
            n = s.constraints.get("n_bullets", s.constraints.get("n_numbered"))
            assert str(n) in s.prompt
    assert seen_known > 0


def test_constraints_are_stated_in_the_prompt():
    for s in generate_prompts(0, 600):
        assert bool(s.constraints) == (s.kind == "instruction")
        c, p = s.constraints, s.prompt
        for key in ("max_words", "min_words", "n_bullets", "n_numbered"):
            if key in c:
                assert f"{c[key]} " in p, (key, p)
        for w in c.get("keywords", ()):
            assert f"'{w}'" in p
        for k in c.get("json_keys", ()):
            assert f'"{k}"' in p
        if "start_with" in c:
            assert f"'{c['start_with']}'" in p
        assert not ({"lowercase", "uppercase"} <= set(c))
        assert not ({"max_words", "min_words"} <= set(c))


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1)
    assert spearman([1, 1, 2, 2], [1, 2, 1, 2]) == pytest.approx(0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


# ------------------------------------------------------------------------------------------ shipped data


def _records(name):
    with open(SHIPPED / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.mark.parametrize("name", ["train.jsonl", "eval.jsonl"])
def test_shipped_split_loads_cleanly(name):
    lists, report = load_lists(SHIPPED / name, skip_bad=True)
    assert report.n_rejected == 0, report.examples
    assert report.format == "native"
    assert len(lists) == report.records_read > 0
    for lst in lists:
        assert lst.n == 4
        assert set(lst.aspects) == set(ASPECTS)
        assert lst.prompt and [m["role"] for m in lst.prompt] == ["user"]  # no style system prompt leaked
        for values in lst.ratings.values():
            assert all(v in (1, 2, 3, 4, 5) for v in values)
    lists_strict, _ = load_lists(SHIPPED / name, aspects=ASPECTS)  # strict mode accepts it too
    assert len(lists_strict) == len(lists)


def test_shipped_splits_sizes_and_disjoint():
    train, held = _records("train.jsonl"), _records("eval.jsonl")
    info = json.loads((SHIPPED / "build_info.json").read_text())
    assert len(train) + len(held) == info["n_prompts"] - len(info["dropped_prompts"])
    assert len(held) <= info["n_eval"]
    assert not {r["prompt"][0]["content"] for r in train} & {r["prompt"][0]["content"] for r in held}
    assert not {r["id"] for r in train} & {r["id"] for r in held}
    systems = {m["system"] for r in train + held for m in r["meta"]}
    for r in train + held:
        assert r["prompt"][0]["content"] == r["spec"]["prompt"]
        assert not any(s and s in r["prompt"][0]["content"] for s in systems)
        assert len(r["meta"]) == 4 and sorted(m["slot"] for m in r["meta"]) == [0, 1, 2, 3]


def test_shipped_ratings_equal_rejudging():
    for name in ("train.jsonl", "eval.jsonl"):
        for r in _records(name):
            judged = [judge_all(r["spec"], x) for x in r["responses"]]
            assert r["ratings"] == {a: [j[a] for j in judged] for a in ASPECTS}, r["id"]


def test_shipped_conciseness_and_informativeness_conflict():
    recs = _records("train.jsonl") + _records("eval.jsonl")
    c = [v for r in recs for v in r["ratings"]["conciseness"]]
    i = [v for r in recs for v in r["ratings"]["informativeness"]]
    assert spearman(c, i) < 0


def test_datasheet_counts_match_files():
    sheet = (SHIPPED / "DATASHEET.md").read_text()
    for split, fname in (("train", "train.jsonl"), ("eval", "eval.jsonl")):
        recs = _records(fname)
        m = re.search(rf"^- {split}: (\d+) prompts, (\d+) responses", sheet, re.MULTILINE)
        assert m, split
        assert int(m.group(1)) == len(recs)
        assert int(m.group(2)) == sum(len(r["responses"]) for r in recs)
    # the "all" histogram of each aspect sums to the number of responses and matches the files
    recs = _records("train.jsonl") + _records("eval.jsonl")
    section = sheet[sheet.index("\nall:\n"):]
    for a in ASPECTS:
        row = re.search(rf"^\| {a} \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|", section, re.MULTILINE)
        counts = [int(x) for x in row.groups()]
        values = [v for r in recs for v in r["ratings"][a]]
        assert counts == [values.count(k) for k in range(1, 6)], a


# ------------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from lambda_dpo.testing import gpt2_tokenizer, tiny_model

    path = tmp_path_factory.mktemp("tiny_demo_model")
    tok = gpt2_tokenizer()
    tiny_model("llama", vocab_size=len(tok)).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_tiny_end_to_end_build(tmp_path, tiny_model_dir):
    out = tmp_path / "demo"
    info = build_demo_dataset(out, seed=0, n_prompts=6, n_eval=2, max_new_tokens=8, model=tiny_model_dir,
                              batch_size=4, progress=False, threads=1)
    assert {p.name for p in out.iterdir()} == {"train.jsonl", "eval.jsonl", "DATASHEET.md", "build_info.json"}
    n_lists = 0
    for name in ("train.jsonl", "eval.jsonl"):
        lists, report = load_lists(out / name, skip_bad=True)
        assert report.n_rejected == 0
        assert all(lst.n == 4 and set(lst.aspects) == set(ASPECTS) for lst in lists)
        n_lists += len(lists)
    assert n_lists == 6 - len(info["dropped_prompts"])
    assert "## Correlations between aspects" in (out / "DATASHEET.md").read_text()
    assert rejudge(out) == {"train": 0, "eval": 0}
    # same seed, same files
    again = tmp_path / "again"
    build_demo_dataset(again, seed=0, n_prompts=6, n_eval=2, max_new_tokens=8, model=tiny_model_dir,
                       batch_size=4, progress=False, threads=1)
    for name in ("train.jsonl", "eval.jsonl"):
        assert (out / name).read_text() == (again / name).read_text()


def test_cli_quick(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "quick"
    assert main(["--quick", "--out-dir", str(out), "--model", tiny_model_dir, "--no-progress", "--seed", "3",
                 "--threads", "1"]) == 0
    train, _ = load_lists(out / "train.jsonl")
    held, _ = load_lists(out / "eval.jsonl")
    info = json.loads((out / "build_info.json").read_text())
    assert len(train) + len(held) == 8 - len(info["dropped_prompts"])
    assert info["seed"] == 3 and info["max_new_tokens"] == 16
    assert info["command"].startswith("lambda-dpo build-data --quick")
    assert "wrote" in capsys.readouterr().out


def test_exclude_drops_prompts_already_in_another_file(tmp_path, tiny_model_dir, capsys):
    """A second build next to a held-out file: none of that file's prompts is sampled again, and the
    dropped ones are counted (info, datasheet, CLI line), never silently lost."""
    first = tmp_path / "first"
    build_demo_dataset(first, seed=0, n_prompts=6, n_eval=2, max_new_tokens=4, model=tiny_model_dir,
                       batch_size=6, progress=False, threads=1)
    held = first / "eval.jsonl"
    held_prompts = {lst.prompt[-1]["content"] for lst in load_lists(held)[0]}
    # the same seed regenerates the same 6 prompts, so exactly the held-out ones must go
    out = tmp_path / "more"
    assert main(["--out-dir", str(out), "--seed", "0", "--n-prompts", "6", "--n-eval", "0", "--max-new-tokens", "4",
                 "--batch-size", "6", "--model", tiny_model_dir, "--no-progress", "--threads", "1",
                 "--exclude", str(held)]) == 0
    info = json.loads((out / "build_info.json").read_text())
    assert len(info["excluded_prompts"]) == len(held_prompts) == 2
    assert info["exclude"] == [str(held)]
    built = [lst.prompt[-1]["content"] for lst in load_lists(out / "train.jsonl")[0]]
    assert len(built) == 6 - 2 - len(info["dropped_prompts"])
    assert not held_prompts & set(built)
    assert f"--exclude {held}" in info["command"]
    assert "prompts excluded before sampling" in (out / "DATASHEET.md").read_text()
    assert "2 prompts excluded" in capsys.readouterr().out


def test_excluding_every_prompt_is_a_clear_error(tmp_path, tiny_model_dir):
    first = tmp_path / "first"
    build_demo_dataset(first, seed=0, n_prompts=4, n_eval=0, max_new_tokens=2, model=tiny_model_dir,
                       batch_size=4, progress=False, threads=1)
    with pytest.raises(ValueError, match="--exclude left 0 of 4 prompts"):
        build_demo_dataset(tmp_path / "again", seed=0, n_prompts=4, n_eval=0, max_new_tokens=2, model=tiny_model_dir,
                           batch_size=4, progress=False, threads=1, exclude=[first / "train.jsonl"])
