"""Rank statistics (evaluation/ranks.py) on hand-made numbers, in plain Python (no pandas or scipy)."""

import ast
import math

import pytest
from conftest import REPO

from lambda_dpo.evaluation.ranks import average_ranks, is_missing, pearson, spearman

SRC = REPO / "src" / "lambda_dpo"


def test_average_ranks_average_ties_and_leave_missing_unranked():
    assert average_ranks([10, 20, 20, 5]) == [2.0, 3.5, 3.5, 1.0]
    assert average_ranks([1, 1, 1]) == [2.0, 2.0, 2.0]
    r = average_ranks([3.0, float("nan"), 1.0, None])
    assert r[0] == 2.0 and r[2] == 1.0 and math.isnan(r[1]) and math.isnan(r[3])
    assert average_ranks([]) == []


def test_spearman_known_values_ties_and_undefined_cases():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(3 / math.sqrt(10))  # average ranks for the tie
    assert spearman([1, 2, 3], [1, 9, 4]) == pytest.approx(0.5)
    assert spearman([1, 2, float("nan"), 3], [1, 2, 99, 3]) == pytest.approx(1.0)  # the NaN pair is dropped
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3])) and math.isnan(spearman([1, 2, 3], [5, 5, 5]))
    assert math.isnan(spearman([1], [2])) and math.isnan(spearman([], []))
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        spearman([1, 2], [1])


def test_is_missing():
    assert is_missing(None) and is_missing(float("nan")) and not is_missing(0.0) and not is_missing("x")


def test_the_statistics_modules_do_not_import_pandas_or_scipy():
    for path in (SRC / "evaluation" / "ranks.py", SRC / "evaluation" / "delta.py", SRC / "demo" / "ablation_metrics.py"):
        tree = ast.parse(path.read_text())
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not imported & {"pandas", "scipy"}, (path.name, imported)
