"""Smoke test of bench/bench_gpu.py without a GPU: its --smoke path (tiny Llama, fp32, CPU, 1 step).

The real measurement (Llama-3.2-1B shape, bf16, CUDA) is `python bench/bench_gpu.py` on a GPU machine.
"""

import json
import math

import pytest
from conftest import load_bench



@pytest.fixture(scope="module")
def bench_gpu():
    return load_bench("bench_gpu")


def test_smoke_runs_lora_and_full_with_positive_timings(bench_gpu, tmp_path, capsys, one_thread):
    assert bench_gpu.main(["--smoke", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    data = json.loads((tmp_path / "gpu.json").read_text())
    assert (tmp_path / "gpu.md").is_file()
    assert data["environment"]["smoke"] is True
    assert data["environment"]["tokens_per_list"] == 16 + 4 * 8
    assert data["environment"]["command"].endswith(f"--smoke --out {tmp_path}")
    by_mode = {r["mode"]: r for r in data["results"]}
    assert set(by_mode) == {"lora", "full"}
    for mode, rec in by_mode.items():
        assert "error" not in rec, rec
        assert len(rec["step_s"]) == 1 and rec["median_step_s"] > 0 and rec["tokens_per_s"] > 0
        assert rec["precompute_s_per_list"] > 0
        assert math.isfinite(rec["loss"])
        assert f"{rec['tokens_per_s']:.0f}" in printed
    assert by_mode["lora"]["trainable_params"] < by_mode["full"]["trainable_params"] == by_mode["full"]["total_params"]
    for mode in ("lora", "full"):
        assert any(line.split()[:1] == [mode] for line in printed.splitlines())


def test_without_cuda_explains_and_exits_0(bench_gpu, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench_gpu.torch.cuda, "is_available", lambda: False)
    assert bench_gpu.main(["--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "no CUDA device" in printed and "python bench/bench_gpu.py" in printed and "2048 tokens" in printed
    assert not any(tmp_path.iterdir())
