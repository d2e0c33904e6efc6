"""Which scoring layout training picks, and that every layout trains alike."""

import json
import logging
import math

import pytest
from conftest import REPO

from lambda_dpo.layouts import LAYOUT_OPTIONS
from lambda_dpo.training.config import LambdaDPOConfig, load_config

ROOT = REPO


def test_training_picks_the_scoring_layout_and_every_layout_trains_alike(tiny_llama_dir, tmp_path, caplog):
    """Same seed, data and lambda draws: the first two logged losses agree whichever layout scores them."""
    from lambda_dpo.training.run import train

    cases = [({}, "packed"),  # auto: the example's lists are far shorter than PACKED_AUTO_MAX_TOKENS
             ({"layout": "prompt_cache"}, "prompt_cache"),
             ({"gradient_checkpointing": True}, "packed"),  # checkpointing drops caches
             ({"layout": "per_response"}, "per_response")]
    losses = []
    for i, (overrides, layout) in enumerate(cases):
        cfg = load_config(None, train_file=str(ROOT / "examples/tiny_listwise.jsonl"), max_train_lists=4,
                          model_name_or_path=tiny_llama_dir, output_dir=str(tmp_path / f"o{i}"), max_steps=2,
                          eval_fraction=0.0, reference_cache_dir=None, lambda_source="dirichlet",
                          save_strategy="no", logging_steps=1, learning_rate=0.1,
                          model_dtype="float32", **overrides)  # 5e-6 agreement is fp32's, not bf16's
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="lambda_dpo.training"):
            result = train(cfg)
        assert f"\n  layout: {layout} (" in caplog.text  # the resolved settings' block
        assert ("packed rows attend by segment (sdpa kernel" in caplog.text) == (layout == "packed")
        if layout == "packed":  # installed for good, so checkpointed layers recompute by segment too
            assert result.trainer.model.config._attn_implementation == "lambda_dpo_sdpa"
        # the resolved settings (lambda_dpo.json) name the layout that ran; the config stays as asked
        assert result.trainer.resolved.layout == layout and cfg.layout == overrides.get("layout", "auto")
        assert json.loads((tmp_path / f"o{i}" / "lambda_dpo.json").read_text())["resolved"]["layout"] == layout
        assert f"\nlayout: {cfg.layout}\n" in (tmp_path / f"o{i}" / "config.yaml").read_text()
        losses.append([h["loss"] for h in result.trainer.state.log_history if "loss" in h])
    assert len(losses[0]) == 2 and all(math.isfinite(x) for x in losses[0])
    for other in losses[1:]:
        assert other == pytest.approx(losses[0], abs=5e-6)


def test_auto_keeps_long_lists_in_the_prompt_cache_layout(tiny_llama_dir, tmp_path, caplog):
    """Lists longer than PACKED_AUTO_MAX_TOKENS (here: long prompts) train with prompt_cache under auto,
    and the log says why."""
    import json

    from lambda_dpo.layouts import PACKED_AUTO_MAX_TOKENS
    from lambda_dpo.training.run import train

    data = tmp_path / "long.jsonl"
    with data.open("w") as f:
        for i in range(4):
            prompt = " ".join(f"word{i}{j}" for j in range(PACKED_AUTO_MAX_TOKENS))
            f.write(json.dumps({"prompt": prompt, "responses": ["yes", "no", "maybe"],
                                "ratings": {"helpfulness": [5, 1, 3]}}) + "\n")
    cfg = load_config(None, train_file=str(data), model_name_or_path=tiny_llama_dir, output_dir=str(tmp_path / "o"),
                      max_steps=1, eval_fraction=0.0, reference_cache_dir=None, save_strategy="no",
                      max_prompt_length=2 * PACKED_AUTO_MAX_TOKENS, model_dtype="float32")
    with caplog.at_level(logging.INFO, logger="lambda_dpo.training"):
        train(cfg)
    assert "  layout: prompt_cache (auto: a training list's prompt and responses: median" in caplog.text
    assert f"packed into one row by `auto` up to {PACKED_AUTO_MAX_TOKENS})" in caplog.text


def test_config_refuses_an_unknown_layout():
    with pytest.raises(ValueError, match=f"layout='fast' is not one of {', '.join(LAYOUT_OPTIONS)}"):
        load_config(None, ["layout=fast"])
    with pytest.raises(ValueError, match="layout='naive' is not one of"):  # the internal name of per_response
        load_config(None, ["layout=naive"])


def test_the_deprecated_layout_keys_still_work_and_warn():
    """shared_prompt / shared_prompt_layout (one release more) become `layout`, with a FutureWarning naming
    the key and value to write instead; one that disagrees with `layout` is an error."""
    for old, new in ((["shared_prompt=false"], "per_response"), (["shared_prompt_layout=packed"], "packed"),
                     (["shared_prompt=true"], "auto"), (["shared_prompt=false", "shared_prompt_layout=packed"],
                                                        "per_response"),
                     (["shared_prompt_layout=prompt_cache", "layout=prompt_cache"], "prompt_cache")):
        with pytest.warns(FutureWarning, match=f"deprecated .* write layout: {new} instead"):
            cfg = load_config(None, old)
        assert cfg.layout == new and cfg.shared_prompt is None and cfg.shared_prompt_layout is None
        assert "shared_prompt" not in cfg.lambda_dpo_fields() and cfg.lambda_dpo_fields()["layout"] == new
    with pytest.warns(FutureWarning, match="shared_prompt: false is deprecated"):
        assert LambdaDPOConfig(shared_prompt=False).layout == "per_response"  # the Python API too
    with pytest.raises(ValueError, match="layout: packed and the deprecated shared_prompt: false .* disagree"):
        load_config(None, ["shared_prompt=false", "layout=packed"])
    with pytest.raises(ValueError, match="shared_prompt_layout='fast'"):
        load_config(None, ["shared_prompt_layout=fast"])
