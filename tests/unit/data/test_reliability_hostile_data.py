"""Hostile input: random and malformed records in every format, written to .jsonl / .json / .parquet,
with truncated files, wrong encodings (latin-1, UTF-16), a BOM, garbage and blank lines.

The only outcomes allowed from `load_lists`:
- a list of valid PreferenceLists (N >= 2, one finite-or-None rating per response, a usable aspect),
  equal to what the records say (responses, ratings, chosen-before-rejected) when the file is intact;
- a `DataError` whose message names the file, the line/record/row (or is about the whole source)
  and the fix; with skip_bad=True, every record is either a list or a counted rejection.
Never another exception, never a silently wrong target.
"""

import json
import os
import math
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from lambda_dpo.data import DataError, PreferenceList, load_lists

SETTINGS = settings(max_examples=int(os.environ.get("HOSTILE_EXAMPLES", 100)), deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])
SOURCE_LEVEL = {"empty_source", "bad_file", "unknown_format", "source_not_found"}


def source_level(path: str) -> set[str]:
    """Errors about the whole source, raised even with skip_bad (a .json file must parse as a whole)."""
    return SOURCE_LEVEL | ({"bad_json", "bad_encoding"} if path.endswith(".json") else set())
MISSING = {"N/A", "NA", "NONE", "NULL", ""}
UF_ASPECTS = ["helpfulness", "honesty", "instruction_following", "truthfulness"]
HS2_ASPECTS = ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]

# ---------------------------------------------------------------------------------- strategies
# Each record is drawn either clean (right shapes; unicode, huge strings, "N/A", numeric strings,
# duplicate prompts) or hostile (any field may be anything at all).
long_text = st.integers(3000, 6000).map(lambda n: "x" * n)
good_text = st.one_of(st.text(min_size=1, max_size=12).filter(str.strip), long_text,
                      st.sampled_from(["N/A", "\u00e9" * 3, "\u65e5\u672c\u8a9e", "\U0001f642", '"}', "\\", "a\x00b"]))
odd_text = st.one_of(long_text, st.sampled_from(["", " ", "\n", "\ud800", "\x00", "<extra_id_1>User\nhi",
                                                 "<extra_id_1>Assistant\n"]))
text = st.one_of(st.text(max_size=12), good_text, odd_text)
good_rating = st.one_of(st.none(), st.integers(0, 5), st.floats(-10, 10), st.sampled_from(["4", " 3.5 ", "N/A", "na"]))
number = st.one_of(st.integers(-10, 10), st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([10**400, -(10**400), 2**64, 1e308, -0.0]))
rating = st.one_of(good_rating, number, st.booleans(),
                   st.sampled_from(["", "nan", "inf", "-inf", "1e400", "four", "1,5", "0x1"]))
anything = st.recursive(st.none() | st.booleans() | number | text,
                        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
                        max_leaves=6)
message = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "bot", None]),
                                 "content": st.one_of(text, text, anything)})


def msg(role):
    return st.fixed_dictionaries({"role": st.just(role), "content": good_text})


good_prompt_messages = st.tuples(st.lists(msg("system"), max_size=1), st.lists(st.tuples(msg("user"), msg("assistant")),
                                                                               max_size=1), msg("user")).map(
    lambda t: [*t[0], *(m for pair in t[1] for m in pair), t[2]])
good_response = st.one_of(good_text, good_text, msg("assistant"), st.tuples(msg("user"), msg("assistant")).map(list))


def either(hostile, good, bad):
    return bad if hostile else good


@st.composite
def native_record(draw, hostile=None):
    hostile = draw(st.booleans()) if hostile is None else hostile
    n = draw(st.integers(0, 4) if hostile else st.integers(2, 4))
    full = st.lists(st.one_of(st.integers(1, 5), st.floats(-5, 5)), min_size=n, max_size=n)
    partial = st.lists(good_rating, min_size=n, max_size=n)
    ratings = st.dictionaries(st.sampled_from(["helpfulness", "honesty", "\u00fc", "a.b"]), st.one_of(full, partial, st.none()),
                              min_size=1, max_size=3).map(lambda d: {**d, "helpfulness": d.get("helpfulness") or [1] * n})
    bad_ratings = st.dictionaries(st.sampled_from(["helpfulness", "honesty", ""]),
                                  st.one_of(st.lists(rating, min_size=n, max_size=n), st.lists(rating, max_size=5),
                                            anything), max_size=3)
    return {"prompt": draw(either(hostile, st.one_of(good_text, good_prompt_messages),
                                  st.one_of(text, st.lists(message, max_size=3), anything))),
            "responses": draw(either(hostile, st.lists(good_response, min_size=n, max_size=n),
                                     st.one_of(st.lists(st.one_of(text, message, st.lists(message, max_size=2)),
                                                        min_size=n, max_size=n), anything))),
            "ratings": draw(either(hostile, ratings, st.one_of(bad_ratings, anything)))}


@st.composite
def uf_record(draw, hostile=None):
    hostile = draw(st.booleans()) if hostile is None else hostile
    good_ann = st.one_of(st.fixed_dictionaries({"Rating": st.sampled_from(["1", "2", "3", "4", "5", "N/A", 3, 4.5]),
                                                "Rationale": st.text(max_size=5)}),
                         st.lists(st.fixed_dictionaries({"Rating": st.sampled_from(["1", "5", "N/A"])}), max_size=1))
    bad_ann = st.one_of(st.fixed_dictionaries({"Rating": rating}), st.lists(st.fixed_dictionaries({"Rating": rating}),
                                                                            max_size=3), rating, anything)
    annotations = st.dictionaries(st.sampled_from(UF_ASPECTS + ["other"]), bad_ann if hostile else good_ann, max_size=5)
    completion = st.fixed_dictionaries({"response": good_text, "model": st.text(max_size=5),
                                        "annotations": annotations.map(lambda d: {**d, "honesty": {"Rating": "3"}})})
    bad_completion = st.one_of(st.fixed_dictionaries({"response": text, "annotations": st.one_of(annotations, anything)}),
                               anything)
    return {"instruction": draw(either(hostile, good_text, text)),
            "completions": draw(either(hostile, st.lists(completion, min_size=2, max_size=4),
                                       st.one_of(st.lists(st.one_of(completion, bad_completion), max_size=5), anything)))}


@st.composite
def hs2_record(draw, hostile=None):
    hostile = draw(st.booleans()) if hostile is None else hostile
    prompts = ["p1", "p2", "<extra_id_1>User\nq\n<extra_id_1>Assistant\na\n<extra_id_1>User\nz"]
    rec = {"prompt": draw(st.sampled_from(prompts) if not hostile else st.one_of(st.sampled_from(["", " ", *prompts]),
                                                                                  anything)),
           "response": draw(either(hostile, good_text, text))}
    for a in HS2_ASPECTS:
        rec[a] = draw(either(hostile, st.one_of(st.integers(0, 4), st.none()), rating))
    return rec


@st.composite
def pairwise_record(draw, hostile=None):
    hostile = draw(st.booleans()) if hostile is None else hostile
    if hostile:
        conv = st.lists(message, max_size=4)
        return {"prompt": draw(st.one_of(text, conv, st.none(), anything)), "chosen": draw(st.one_of(text, conv, anything)),
                "rejected": draw(st.one_of(text, conv, anything))}
    if draw(st.booleans()):
        return {"prompt": draw(st.one_of(good_text, good_prompt_messages)), "chosen": draw(good_response),
                "rejected": draw(good_response)}
    prompt = draw(good_prompt_messages)  # implicit prompt: two conversations sharing it
    return {"chosen": [*prompt, draw(msg("assistant"))], "rejected": [*prompt, draw(msg("assistant"))]}


RECORDS = {"native": native_record, "ultrafeedback": uf_record, "helpsteer2": hs2_record,
           "pairwise": pairwise_record}


@st.composite
def records_file(draw, fmt):
    """One file's records (all clean, or each clean or hostile), sometimes with a field missing, or a
    record of another format."""
    clean = draw(st.booleans())
    out = []
    for rec in draw(st.lists(RECORDS[fmt](False if clean else None), min_size=1, max_size=4)):
        if not clean and draw(st.integers(0, 4)) == 0:
            rec = {k: v for k, v in rec.items() if k != draw(st.sampled_from(sorted(rec)))}
        out.append(rec)
    if not clean and draw(st.integers(0, 4)) == 0:
        out.insert(draw(st.integers(0, len(out))), draw(st.one_of(*(r() for r in RECORDS.values()), anything)))
    return out


CORRUPTIONS = [None, None, None, None, None, "bom", "blank_lines", "truncate", "latin1", "utf16", "garbage_line", "deep"]


def serialize(records, suffix, corruption, cut: float) -> bytes:
    if suffix == ".jsonl":
        lines = [json.dumps(r, ensure_ascii=corruption != "latin1") for r in records]
        if corruption == "blank_lines":
            lines = ["", *lines[:1], "   ", *lines[1:], ""]
        if corruption == "garbage_line":
            lines.insert(len(lines) // 2, '{"prompt": "unterminated')
        if corruption == "deep":
            lines.append("[" * 50_000)
        text = "\n".join(lines) + "\n"
    else:
        text = json.dumps(records, indent=1, ensure_ascii=corruption != "latin1")
        if corruption == "deep":
            text = "[" * 50_000
    if corruption == "latin1":
        data = text.encode("latin-1", errors="replace") + "é".encode("latin-1")
    elif corruption == "utf16":
        data = text.encode("utf-16")
    else:
        data = text.encode("utf-8", errors="surrogatepass")  # lone surrogates stay escaped by json.dumps
    if corruption == "bom":
        data = b"\xef\xbb\xbf" + data
    if corruption == "truncate":
        data = data[: int(len(data) * cut)]
    return data


# ---------------------------------------------------------------------------------- oracles
def expected_rating(v):
    if v is None or (isinstance(v, str) and v.strip().upper() in MISSING):
        return None
    return float(v)


def response_text(r):
    if isinstance(r, str):
        return r
    return r["content"] if isinstance(r, dict) else r[-1]["content"]


def expected_lists(fmt, records) -> list[tuple[tuple, dict]]:
    """(responses, ratings) of each list the intact records must give when they all load."""
    if fmt == "native":
        return [(tuple(response_text(x) for x in r["responses"]),
                 {str(a): tuple(expected_rating(v) for v in vals) for a, vals in r["ratings"].items()
                  if vals is not None}) for r in records]
    if fmt == "pairwise":
        out = []
        for r in records:
            if r.get("prompt") is not None:
                out.append(((response_text(r["chosen"]), response_text(r["rejected"])), {"preference": (1.0, 0.0)}))
            else:  # implicit prompt: the final assistant message of each conversation
                out.append(((r["chosen"][-1]["content"], r["rejected"][-1]["content"]), {"preference": (1.0, 0.0)}))
        return out
    if fmt == "ultrafeedback":
        out = []
        for r in records:
            anns = [c.get("annotations") or {} for c in r["completions"]]
            seen = list(dict.fromkeys(a for ann in anns for a in ann))
            names = [a for a in UF_ASPECTS if a in seen] + [a for a in seen if a not in UF_ASPECTS]

            def uf(v):
                v = (v[0] if v else None) if isinstance(v, list) else v
                return expected_rating(v["Rating"] if isinstance(v, dict) else v)

            out.append((tuple(c["response"] for c in r["completions"]),
                        {a: tuple(uf(ann[a]) if a in ann else None for ann in anns) for a in names}))
        return out
    groups: dict[str, list] = {}  # helpsteer2: rows with the same prompt text, first-seen order
    for r in records:
        groups.setdefault(r["prompt"], []).append(r)
    return [(tuple(row["response"] for row in rows),
             {a: tuple(expected_rating(row.get(a)) for row in rows) for a in HS2_ASPECTS}) for rows in groups.values()]


def check_list(lst, path):
    assert isinstance(lst, PreferenceList)
    assert lst.n >= 2 and all(isinstance(r, str) and r.strip() for r in lst.responses)
    assert lst.prompt and all(m["role"] in ("system", "user", "assistant") and isinstance(m["content"], str)
                              for m in lst.prompt)
    assert lst.prompt[-1]["role"] != "assistant"
    for aspect, values in lst.ratings.items():
        assert len(values) == lst.n, aspect
        assert all(v is None or (type(v) is float and math.isfinite(v)) for v in values)
    assert lst.usable_aspects()
    for t in (*lst.responses, *(m["content"] for m in lst.prompt), *lst.ratings):
        t.encode("utf-8")  # no lone surrogate reaches the tokenizer
    assert re.fullmatch(re.escape(path) + r":(\d+|record \d+|row \d+)", lst.origin)


def check_error(err, path, data: bytes):
    assert isinstance(err, DataError), f"{type(err).__name__}: {err}"
    message = str(err)
    message.encode("utf-8")  # printable
    assert path in message and "Fix:" in message, message
    m = re.fullmatch(re.escape(path) + r"(?::(\d+|record \d+|row \d+))?", err.origin)
    assert m, err.origin
    if m.group(1) is None:
        assert err.reason in SOURCE_LEVEL, message
    elif m.group(1).isdigit():
        assert 1 <= int(m.group(1)) <= data.count(b"\n") + 1, message


def load(path, fmt, skip_bad):
    try:
        return load_lists(path, fmt, skip_bad=skip_bad), None
    except DataError as err:
        return None, err
    except Exception as err:  # noqa: BLE001 - the property: nothing else escapes
        pytest.fail(f"load_lists({path!r}, {fmt!r}, skip_bad={skip_bad}) raised {type(err).__name__}: {err}")


def check_source(path, fmt_arg, real_fmt, records, data, intact):
    strict, err = load(path, fmt_arg, False)
    event(f"{'ok' if err is None else err.reason}{' (checked against the records)' if err is None and intact else ''}")
    if err is not None:
        check_error(err, path, data)
    else:
        lists, report = strict
        for lst in lists:
            check_list(lst, path)
        assert report.n_rejected == 0 and report.lists == len(lists)
        if intact and all(isinstance(r, dict) for r in records):
            got = [(lst.responses, dict(lst.ratings)) for lst in lists]
            assert got == expected_lists(real_fmt, records)

    lenient, lerr = load(path, fmt_arg, True)
    if lerr is not None:  # only errors about the whole source are raised when skipping
        check_error(lerr, path, data)
        assert lerr.reason in source_level(path), str(lerr)
        return
    lists, report = lenient
    for lst in lists:
        check_list(lst, path)
    assert report.lists == len(lists)
    if report.format == "helpsteer2":  # rows form lists; a rejected group counts once for all its rows
        assert report.records_read >= sum(lst.n for lst in lists) + report.n_rejected
    else:
        assert report.records_read == len(lists) + report.n_rejected
    for reason, example in report.examples.items():
        assert reason in report.rejected and path in example and "Fix:" in example
    if err is None:
        assert [l.responses for l in lists] == [l.responses for l in strict[0]] and report.n_rejected == 0
    elif err.reason not in source_level(path):
        assert report.rejected[err.reason] >= 1, (str(err), report.rejected)


@pytest.mark.parametrize("fmt", ["native", "ultrafeedback", "helpsteer2", "pairwise"])
@SETTINGS
@given(data=st.data())
def test_json_sources_give_valid_lists_or_located_errors(fmt, data, tmp_path_factory):
    records = data.draw(records_file(fmt), label="records")
    suffix = data.draw(st.sampled_from([".jsonl", ".json"]), label="suffix")
    corruption = data.draw(st.sampled_from(CORRUPTIONS), label="corruption")
    cut = data.draw(st.floats(0.05, 0.95), label="cut")
    raw = serialize(records, suffix, corruption, cut)
    path = str(tmp_path_factory.mktemp("hostile") / f"data{suffix}")
    with open(path, "wb") as f:
        f.write(raw)
    fmt_arg = data.draw(st.sampled_from(["auto", fmt]), label="format")
    check_source(path, fmt_arg, fmt, records, raw, intact=corruption in (None, "bom", "blank_lines"))


# ------------------------------------------------------------------------------------ parquet
finite_or_not = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(0, 5).map(float))
parquet_native = st.builds(
    lambda n, prompt, resp, h, k: {"prompt": prompt, "responses": resp[:n],
                                   "ratings": {"helpfulness": h[:n + k % 2], "honesty": None if k == 3 else h[:n]}},
    st.integers(0, 4), st.one_of(st.text(max_size=8), st.just("")), st.lists(st.text(max_size=6), min_size=5,
                                                                             max_size=5),
    st.lists(finite_or_not, min_size=5, max_size=5), st.integers(0, 3))
parquet_hs2 = st.fixed_dictionaries({"prompt": st.sampled_from(["p1", "p2", ""]), "response": st.text(max_size=6),
                                     **{a: st.one_of(st.none(), st.integers(0, 4)) for a in HS2_ASPECTS}})


@SETTINGS
@given(data=st.data())
def test_parquet_sources_give_valid_lists_or_located_errors(data, tmp_path_factory):
    fmt = data.draw(st.sampled_from(["native", "helpsteer2"]), label="format")
    records = data.draw(st.lists(parquet_native if fmt == "native" else parquet_hs2, min_size=1, max_size=5))
    for r in records:  # parquet strings are UTF-8 by construction
        assume(all(not re.search("[\ud800-\udfff]", json.dumps(r, ensure_ascii=False)) for _ in [0]))
    path = str(tmp_path_factory.mktemp("hostile") / "data.parquet")
    pq.write_table(pa.Table.from_pylist(records), path)
    with open(path, "rb") as f:
        raw = f.read()
    truncate = data.draw(st.booleans(), label="truncate")
    if truncate:
        with open(path, "wb") as f:
            f.write(raw[: len(raw) // 2])
    check_source(path, data.draw(st.sampled_from(["auto", fmt])), fmt, records, raw, intact=False)
    if truncate:
        _, err = load(path, fmt, True)
        assert err is not None and err.reason == "bad_file"


# ------------------------------------------------------------------------------- fixed cases
@pytest.mark.parametrize("line, reason", [
    ("[" * 100_000, "bad_json"),  # nesting deeper than the JSON parser's recursion limit
    ('{"prompt": "p", "responses": ["a", "b"], "ratings": {"h": [' + "9" * 5000 + ", 1]}}", "bad_json"),
    ('{"prompt": "p", "responses": ["a", "b"], "ratings": {"h": [' + "9" * 400 + ", 1]}}", "non_finite_rating"),
    ('{"prompt": "p", "responses": ["\\ud800", "b"], "ratings": {"h": [1, 2]}}', "bad_encoding"),
    ('{"prompt": "p", "responses": ["a", "b"], "ratings": {"\\udc00": [1, 2]}}', "bad_encoding"),
    ('{"prompt": "p", "responses": ["a", "b"], "ratings": {"h": [NaN, 1]}}', "non_finite_rating"),
    ('{"prompt": "p", "responses": ["a", "b"], "ratings": {"h": ["Infinity", 1]}}', "non_finite_rating"),
])
def test_found_by_the_properties(tmp_path, line, reason):
    """Each of these escaped as a RecursionError / ValueError / OverflowError, or (lone surrogates) passed
    the loader and crashed the tokenizer with a TypeError."""
    path = tmp_path / "d.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(DataError) as err:
        load_lists(str(path))
    assert err.value.reason == reason and f"{path}:1" in str(err.value) and "Fix:" in str(err.value)
    str(err.value).encode("utf-8")
    json_path = tmp_path / "d.json"
    json_path.write_text("[" + line + "]")
    with pytest.raises(DataError) as err:
        load_lists(str(json_path))
    assert err.value.reason == reason


def test_json_array_in_latin1_names_the_line(tmp_path):
    path = tmp_path / "d.json"
    path.write_bytes('[\n{"prompt": "caf\u00e9"}\n]'.encode("latin-1"))
    with pytest.raises(DataError) as err:
        load_lists(str(path))
    assert err.value.reason == "bad_encoding" and f"{path}:2" in str(err.value)


def test_huge_strings_load(tmp_path):
    path = tmp_path / "d.jsonl"
    big = "word " * 400_000  # 2 MB
    path.write_text(json.dumps({"prompt": big, "responses": [big, "b"], "ratings": {"h": [1, 2]}}) + "\n")
    (lst,), report = load_lists(str(path))
    assert lst.responses[0] == big and report.lists == 1
