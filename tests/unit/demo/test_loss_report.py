"""The loss comparison's report on hand-made summaries: the verdict reads the paired differences'
intervals, and the tables sit in named sections a docs page includes."""

import re

from lambda_dpo.demo.loss_report import render, verdict

ASPECTS = ["x", "y"]


def _ci(mean, lo, hi):
    return {"mean": mean, "lo": lo, "hi": hi}


def _wtl(diff):
    return {"win": _ci(0.5, 0.4, 0.6), "tie": _ci(0.3, 0.2, 0.4), "loss": _ci(0.2, 0.1, 0.3), "difference": diff}


def _metrics():
    row = {"judge": {"x": _ci(3, 2.9, 3.1), "y": _ci(4, 3.9, 4.1), "mean": _ci(3.5, 3.4, 3.6)},
           "words": _ci(30, 28, 32), "kl": _ci(1.234, 1.0, 1.5),
           "listwise": {f"{a}/{f}": _ci(0.8, 0.7, 0.9) for a in ASPECTS for f in ("top1", "ndcg")}}
    return {"aspects": ASPECTS, "anchor": "dpo_best_worst", "model": "m", "seeds": [0, 1, 2], "prompts": 40,
            "preset": "full", "budget": {"max_steps": 100, "max_new_tokens": 96}, "wall_seconds": 600,
            "torch_threads": 2,
            "summary": {"base": {"judge": row["judge"], "words": row["words"]},
                        "dpo_best_worst": dict(row),
                        "lambda_dpo": {**row, "vs_anchor": {"x": _wtl(_ci(0.3, 0.1, 0.5)), "y": _wtl(_ci(-0.2, -0.3, -0.1)),
                                                            "mean": _wtl(_ci(0.05, -0.1, 0.2))}}}}


def test_verdict_says_where_the_interval_excludes_zero():
    text = verdict(_metrics())
    assert "better on x (+0.30)" in text and "worse on y (-0.20)" in text
    assert "no difference its interval can tell on mean (+0.05)" in text


def test_report_tables_are_in_named_sections_in_the_methods_order():
    text = render(_metrics())
    for name in ("verdict", "scores", "wins", "differences", "listwise"):
        assert f"<!-- --8<-- [start:{name}] -->" in text and f"<!-- --8<-- [end:{name}] -->" in text
    rows = re.findall(r"^\| (untrained base|lambda-DPO[^|]*|DPO best-vs-worst) \|", text, re.M)
    assert rows[:3] == ["untrained base", "lambda-DPO (listwise, uniform mixture)", "DPO best-vs-worst"]
    assert "| 1.23 [1.00, 1.50] |" in text  # KL with two decimals
    assert "0 (is the reference)" in text  # the base's KL
    assert "| lambda-DPO (listwise, uniform mixture) | 0.50 / 0.30 / 0.20 |" in text
