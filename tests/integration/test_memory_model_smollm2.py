"""The memory model's CPU prediction against measured peak RSS on the real SmolLM2-135M-Instruct
(integration). The terms, and the same check on the tiny Llama: tests/unit/test_memory_model.py;
`python bench/memory_model.py --calibrate` is the full calibration."""

import pytest
from conftest import load_bench, measured_vs_predicted_peak


@pytest.fixture(scope="module")
def bench():
    return load_bench("memory_model")


@pytest.mark.integration
def test_smollm2_cpu_peak_within_20_percent(bench):
    """SmolLM2-135M-Instruct, LoRA r16, fp32, packed, P/R/N = 128/64/4, two steps (about a minute on 2 cores)."""
    measured, predicted = measured_vs_predicted_peak(bench, ["smollm2", "float32", "packed", 128, 64, 4, "on"])
    assert predicted == pytest.approx(measured, rel=0.2), (measured, predicted)
