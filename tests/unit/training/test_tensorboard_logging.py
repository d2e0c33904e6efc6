"""`report_to: tensorboard` writes what a user watches: per-aspect losses, lambda means, the
adaptive scheduler's probabilities; read back from the event files."""

import pytest

from lambda_dpo.training.config import load_config
from lambda_dpo.training.run import train

pytest.importorskip("tensorboard")


def test_tensorboard_event_files_hold_per_aspect_losses_lambdas_and_schedule(tiny_llama_dir, tmp_path, one_thread):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = tmp_path / "m" / "runs"  # the Trainer's default: output_dir/runs/<date>_<host>
    cfg = load_config(None, model_name_or_path=tiny_llama_dir, train_file="examples/tiny_listwise.jsonl",
                      eval_fraction=0, output_dir=str(tmp_path / "m"), reference_cache_dir=None, max_steps=4,
                      logging_steps=1, per_device_train_batch_size=2, lambda_source="adaptive", adaptive_every=2,
                      adaptive_val_lists=2, report_to=["tensorboard"], model_dtype="float32")
    result = train(cfg)
    events = EventAccumulator(str(next(p.parent for p in logs.rglob("events.out.tfevents.*")))).Reload()
    tags = set(events.Tags()["scalars"])
    for aspect in result.aspects:
        assert f"train/loss/{aspect}" in tags and f"train/lambda/{aspect}" in tags
    assert {"train/loss", "train/top1_accuracy"} <= tags
    prob_tags = {t for t in tags if t.startswith("train/lambda_prob/")}
    assert prob_tags, tags
    steps = [e.step for e in events.Scalars(sorted(prob_tags)[0])]
    assert steps and all(s in (2, 4) for s in steps)
    assert len(events.Scalars("train/loss")) == 4


def test_no_progress_bars_when_stderr_is_not_a_terminal(tiny_llama_dir, tmp_path, one_thread, capsys):
    """Under pytest stderr is captured (not a TTY): reference scoring, training and generation stay quiet."""
    from lambda_dpo.generation import generate, load_steerable

    cfg = load_config(None, model_name_or_path=tiny_llama_dir, train_file="examples/tiny_listwise.jsonl",
                      eval_fraction=0, output_dir=str(tmp_path / "m"), reference_cache_dir=None, max_steps=1,
                      reference_batch_size=1, model_dtype="float32")
    assert cfg.disable_tqdm
    result = train(cfg)
    generate(load_steerable(result.output_dir), ["hi"] * 3, max_new_tokens=2, batch_size=1)
    err = capsys.readouterr().err
    assert "reference log-probs" not in err and "generating" not in err and "it/s" not in err, err[-500:]
