"""Smoke test of the throughput benchmark's modules (bench/) on a tiny model.

No TRL and no SmolLM2 here: the full benchmark is `python bench/bench_throughput.py`.
"""

import pytest
from conftest import load_bench
import torch

from lambda_dpo.testing import tiny_model


@pytest.fixture(scope="module")
def workload():
    return load_bench("workload")


@pytest.fixture(scope="module")
def costs():
    return load_bench("cost_model")


@pytest.fixture(scope="module")
def listwise():
    return load_bench("listwise_steps")


def test_entry_point_loads_with_its_modules():
    entry = load_bench("bench_throughput")
    args = entry.build_parser().parse_args([])
    assert args.methods.split(",") == list(entry.METHODS) and args.configs == "64x64,256x128,512x128"


def test_make_lists_exact_lengths_and_deterministic(workload):
    lists = workload.make_lists(7, 5, 3, 2, vocab_size=1000)
    assert lists == workload.make_lists(7, 5, 3, 2, vocab_size=1000)
    for prompt, responses in lists:
        assert len(prompt) == 7 and len(responses) == 3 and all(len(r) == 5 for r in responses)
        assert all(100 <= t < 999 for t in prompt + [t for r in responses for t in r])


def test_token_counts_and_predicted_ratios(costs):
    p, r, n = 256, 128, 4
    assert costs.token_counts("ours", p, r, n)["policy_tokens"] == p + n * r
    assert costs.token_counts("naive", p, r, n)["policy_tokens"] == n * (p + r)
    assert costs.token_counts("trl_all", p, r, n)["policy_tokens"] == 2 * 6 * (p + r)
    assert costs.token_counts("trl_bw", p, r, n)["reference_tokens"] == 2 * (p + r)
    # k=3: naive = (3*1536 + 1536) / (3*768) = 8/3
    assert costs.predicted_speedup("naive", p, r, n, 3.0) == pytest.approx(8 / 3)


@pytest.mark.parametrize("method", ["ours", "ours_packed", "ours_segments", "naive"])
def test_time_listwise_steps_on_tiny_model(workload, listwise, method):
    model = workload.add_lora(tiny_model("llama", vocab_size=512), r=4)
    lists = workload.make_lists(12, 6, 3, 2, vocab_size=512)
    before = {k: v.clone() for k, v in model.named_parameters() if v.requires_grad}
    out = listwise.time_listwise_steps(model, lists, method, warmup=1, steps=1)
    assert len(out["step_s"]) == 1 and out["step_s"][0] > 0 and out["cpu_s"][0] >= 0
    assert torch.isfinite(torch.tensor(out["loss"]))
    if method != "naive":
        assert out["precompute_s_per_list"] > 0
    else:
        assert out["precompute_s_per_list"] is None
    changed = [k for k, v in model.named_parameters() if v.requires_grad and not torch.equal(v, before[k])]
    assert changed, "the AdamW step should have updated the LoRA weights"


def test_flop_model_sits_between_one_and_token_counts(costs):
    # the response-only output layer (and, packed, the dense block mask's attention) make the real
    # saving smaller than the token counts say, but the shared-prompt step is still the cheaper one
    for p, r in [(64, 64), (256, 128), (512, 128)]:
        flops = costs.predicted_speedup_flops("naive", p, r, 4)
        assert 1 < flops < costs.predicted_speedup("naive", p, r, 4, 2.0)
        # prompt_cache skips the masked blocks the packed row pays for
        assert costs.flop_model("ours", p, r, 4) < costs.flop_model("ours_packed", p, r, 4)
        # by segment the packed row pays prompt_cache's pairs and tokens
        assert costs.flop_model("ours_segments", p, r, 4) == costs.flop_model("ours", p, r, 4)
        assert costs.token_counts("ours_segments", p, r, 4) == costs.token_counts("ours", p, r, 4)
    assert costs.flop_model("trl_all", 256, 128, 4) == pytest.approx(6 * costs.flop_model("trl_bw", 256, 128, 4))


def test_precomputed_reference_gives_the_same_steps(workload, listwise):
    """profile_step.py passes the reference in, to keep its precompute out of the profile: same loss."""
    lists = workload.make_lists(12, 6, 3, 2, vocab_size=512)
    losses = []
    for pass_reference in (False, True):
        torch.manual_seed(0)
        model = workload.add_lora(tiny_model("llama", vocab_size=512), r=4)
        reference = listwise.precompute_reference(model, lists)[0] if pass_reference else None
        out = listwise.time_listwise_steps(model, lists, "ours", warmup=1, steps=1, reference=reference)
        assert (out["precompute_s_per_list"] is None) == pass_reference
        losses.append(out["loss"])
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


def test_profile_kinds_of_work():
    classify = load_bench("profile_step").classify
    vocab = 49152
    assert classify("mm", [[512, 576], [576, vocab]], vocab).startswith("output layer")
    assert classify("mm", [[512, 576], [576, 1536]], vocab).startswith("linear layers")
    assert classify("_scaled_dot_product_flash_attention_for_cpu", [[4, 9, 128, 64]], vocab) == "attention kernel"
    assert classify("copy_", [[4, 3, 3, 384, 64], [4, 3, 3, 384, 64], []], vocab).startswith("key/value head expansion")
    assert classify("copy_", [[4, 384, 576], [4, 384, 576], []], vocab) == "copies and views"
    assert classify("fill_", [[4, 384, 9, 64], []], vocab) == "allocation and zero fills"
    assert classify("_foreach_mul_", [[], []], vocab).startswith("optimizer")
    assert classify("silu", [[4, 128, 1536]], vocab).startswith("elementwise")


def test_profile_side_by_side_table():
    side_by_side = load_bench("profile_step").side_by_side
    results = {"prompt_cache": {"phases_s": {"policy forward": 1.0, "backward": 2.0}, "kinds_s": {"attention kernel": 1.0}},
               "naive": {"phases_s": {"reference forward": 1.0, "policy forward": 3.0, "backward": 4.0},
                         "kinds_s": {"attention kernel": 2.5}}}
    lines = side_by_side(results)
    assert lines[0] == "| s per step | prompt_cache | naive | naive over prompt_cache |"
    swapped = side_by_side({"packed": results["prompt_cache"], "naive": results["naive"]})
    assert swapped[0] == "| s per step | packed | naive | naive over packed |"
    assert "| policy forward | 1.000 | 3.000 | 3.00x |" in lines
    assert "| reference forward | 0.000 | 1.000 | - |" in lines
    assert "| **total** (phases) | 3.000 | 8.000 | 2.67x |" in lines
    assert "| attention kernel | 1.000 | 2.500 | 2.50x |" in lines


def test_generation_variants_table():
    gv = load_bench("generation_variants")
    med = {f"{d}/{v}": 10.0 for d, v in gv.SETTINGS}
    med.update({"bfloat16/default": 8.0, "float32/one_batch": 6.0, "bfloat16/one_batch": 4.0})
    record = {"median_s": med, "replies_equal_to_default": {"bfloat16/one_batch": 23}, "prompts": 24, "threads": 2,
              "new_tokens": 64, "rounds": 2}
    lines = gv.render(record)
    assert "| bfloat16 | default | 8.00 | 1.25x | 1.00x | 1.25x | - |" in lines
    assert "| bfloat16 | one_batch | 4.00 | 2.50x | 2.00x | 1.50x | 23 |" in lines
    assert "| bfloat16 | peft_cast | 10.00 | 1.00x | 0.80x | - | - |" in lines


def test_head_variants_before_and_after_agree(monkeypatch):
    """head_variants.py times the old out-of-place log-softmax against the in-place one: the two
    give the same log-probs and input gradients, so the bench compares like with like."""
    from lambda_dpo import logprobs

    bench = load_bench("head_variants")
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False).requires_grad_(False)
    targets = torch.randint(0, 50, (23,))
    results = []
    for forward in (None, bench.out_of_place_forward):
        if forward is not None:
            monkeypatch.setattr(logprobs._FrozenHeadTokenLogps, "forward", staticmethod(forward))
        hidden = torch.randn(23, 16, generator=torch.Generator().manual_seed(1), requires_grad=True)
        logps = logprobs.chunked_token_logps(hidden, head, targets, chunk_size=4)
        logps.sum().backward()
        results.append((logps.detach(), hidden.grad))
    torch.testing.assert_close(results[0], results[1])


def test_layouts_ratios_and_table_for_one_or_both_precisions():
    bl = load_bench("bench_layouts")
    methods = ["ours", "ours_packed", "naive"]
    med = {"float32/ours": 1.0, "float32/ours_packed": 0.8, "float32/naive": 2.4,
           "bfloat16/ours": 0.5, "bfloat16/ours_packed": 0.5, "bfloat16/naive": 1.5}
    fp32 = bl.ratios(med, methods, ("float32",))
    assert fp32 == pytest.approx({"naive_over_prompt_cache_fp32": 2.4, "packed_over_prompt_cache_fp32": 1.25,
                                  "naive_over_packed_fp32": 3.0})
    both = bl.ratios(med, methods)
    assert both["mixed_over_fp32_prompt_cache"] == pytest.approx(2.0)
    assert both["mixed_over_fp32_naive"] == pytest.approx(1.6)
    assert both["naive_over_prompt_cache_mixed"] == pytest.approx(3.0)
    results = {"128x64": {"median_s": med, **fp32, "flop_model_naive_over_prompt_cache": 2.71}}
    lines = bl.table(results, methods, ("float32",), 4)
    assert lines[0].count("|") == lines[2].count("|") == 10  # 9 columns: P/R, row, 3 medians, 3 ratios, FLOP
    assert lines[2] == "| 128/64 | 384 | 1.00 | 0.80 | 2.40 | **2.40x** | 1.25x | 3.00x | 2.71x |"


def test_layouts_report_recomputes_ratios_from_the_recorded_medians(tmp_path):
    """--retable rebuilds a results table from its JSON: the medians as recorded, every ratio
    recomputed (segments against prompt_cache and across precisions included), the CPU named."""
    import json

    bl = load_bench("bench_layouts")
    med = {"float32/ours": 3.0, "float32/ours_segments": 2.5, "bfloat16/ours": 1.5, "bfloat16/ours_segments": 1.0}
    record = {"threads": 2, "n": 4, "rounds": 3, "cpu_model": "Test CPU", "cpu_bf16": ["avx512_bf16"],
              "results": {"256x128": {"median_s": med, "kernels": {"float32": "sdpa", "bfloat16": "eager"},
                                      "flop_model_naive_over_prompt_cache": 2.66}}}
    (tmp_path / "old.json").write_text(json.dumps(record))  # as older runs recorded it: no methods / dtypes
    out = bl.main(["--retable", "--tag", "old", "--out", str(tmp_path)])
    assert out["methods"] == ["ours", "ours_segments"] and out["dtypes"] == ["float32", "bfloat16"]
    md = (tmp_path / "old.md").read_text().splitlines()
    head = [c.strip() for c in md[2].split("|")[1:-1]]
    row = [c.strip() for c in md[4].split("|")[1:-1]]
    cells = dict(zip(head, row))
    assert cells["fp32 packed+segments"] == "2.50" and cells["mixed prompt_cache"] == "1.50"
    assert cells["prompt cache over segments fp32"] == "1.20x"
    assert cells["prompt cache over segments mixed"] == "1.50x"
    assert cells["mixed over fp32 segments"] == "2.50x"
    assert cells["mixed over fp32 prompt cache (target 1.6x)"] == "**2.00x**"
    assert md[-1] == "CPU: Test CPU, bf16 instructions: ['avx512_bf16']; OpenMP environment: not recorded"


def test_mixed_precision_jobs_and_ratios_for_every_layout():
    """bench_mixed_precision: one train job per config x layout (packed by default too), and each
    shared-prompt layout's speed over naive per precision, beside the mixed-over-fp32 ratio."""
    bm = load_bench("bench_mixed_precision")
    args = bm.build_parser().parse_args(["--configs", "128x64", "--tasks", "train"])
    assert args.attn == "auto" and args.gen_batch == 32
    assert [label for _, label, _ in bm.jobs(args)] == ["128/64 packed", "128/64 prompt_cache", "128/64 naive"]
    secs = {("float32", "packed"): 2.0, ("float32", "prompt_cache"): 2.5, ("float32", "naive"): 5.0,
            ("bfloat16", "packed"): 1.0, ("bfloat16", "prompt_cache"): 1.25, ("bfloat16", "naive"): 2.0}
    records = [{"task": "train", "label": f"128/64 {layout}", "dtype": d, "median_s": s, "median_cpu_s": s,
                "rate": 1 / s, "peak_rss_mib": 100.0} for (d, layout), s in secs.items()]
    rows = {r["label"]: r for r in bm.summarise(records)}
    assert rows["128/64 packed"]["fp32_over_naive"] == pytest.approx(2.5)
    assert rows["128/64 packed"]["mixed_over_naive"] == pytest.approx(2.0)
    assert rows["128/64 prompt_cache"]["fp32_over_naive"] == pytest.approx(2.0)
    assert rows["128/64 packed"]["speedup"] == pytest.approx(2.0)
    assert "fp32_over_naive" not in rows["128/64 naive"]
    assert "| train | 128/64 packed | 2.00 s/list (0.5 lists/s) | 1.00 s/list (1 lists/s) | **2.00x** (2.00x) | 100 / 100 | 2.50x / 2.00x |" \
        in bm.table(list(rows.values())).splitlines()
