"""A finished demo measured again under another decoding, from the models it saved:
`lambda-dpo demo --remeasure RUN_DIR --decoding mixed --out OUT`.

Every generated figure (the fronts, the other wording, the vertex matrices, the centre lambda, the single
points) is measured again from RUN_DIR/models with the run's preset and prompts; the figures that score given
replies (held-out top-1, Delta, the training loss) do not depend on decoding and are the run's own. So two
decodings are compared on the same trained models, without training them again.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..generation import SteerableModel, check_decoding, load_steerable, with_text
from ..models import load_model
from ..saved_model import base_model_source, read_model_meta
from .report import save_demo_outputs
from .run import (STAGES, STEERED, Preset, timed, measure_base_fronts, measure_control,
                  measure_steered, prompt_sets)


def preset_of(metrics: dict) -> Preset:
    """The Preset a run's metrics.json recorded (`budget`), with its sequences as tuples again."""
    return Preset(**{k: tuple(v) if isinstance(v, list) else v for k, v in metrics["budget"].items()})


def remeasure_demo(run_dir: str | Path, out: str | Path, decoding: str) -> Path:
    """Measure RUN_DIR's saved models again under `decoding`; writes metrics.json, report.md and plots to `out`
    (`metrics["remeasured"]` names the run and the decoding it had) and returns `out`."""
    check_decoding(decoding)
    run_dir, out = Path(run_dir), Path(out)
    path = run_dir / "metrics.json"
    if not path.exists():
        raise FileNotFoundError(f"demo --remeasure: {path} not found (a finished `lambda-dpo demo` run writes it)")
    m = json.loads(path.read_text())
    p = preset_of(m)
    sets = prompt_sets(p)
    for ps in sets:
        if ps.prompts != m["prompts"][ps.name]:
            raise ValueError(f"demo --remeasure: the {ps.name} prompts of {path} are not the ones this version ships; "
                             "measure that run with the version that wrote it")
    stages = dict.fromkeys(STAGES, 0.0)
    runs = {name: {} for name in m["runs"]}
    base = m.get("base_with_text")
    for seed in m["seeds"]:
        steered = _load(run_dir, STEERED, seed)
        old = m["runs"][STEERED][str(seed)]
        with timed(stages, "steered model"):
            runs[STEERED][str(seed)] = {**old, **measure_steered(steered, sets, p, m["grid_step"], decoding)}
        if seed == m["seeds"][0] and base is not None:
            source = base_model_source(read_model_meta(run_dir / "models" / f"{STEERED}-seed{seed}"))
            model = load_model(source, dtype=m["recipe"]["model_dtype"]).eval()  # as the demo loads it
            with timed(stages, "controls"):
                base = {**base, **measure_base_fronts(with_text(model, steered), sets, p, decoding)}
        for name in m["runs"]:
            if name != STEERED:
                own = _load(run_dir, name, seed)
                with timed(stages, "controls"):
                    runs[name][str(seed)] = {**m["runs"][name][str(seed)],
                                             **measure_control(with_text(own.model, steered), sets, p, own, decoding)}
    measured = {k: round(v, 1) for k, v in stages.items() if k != "training"}
    m = {**m, "runs": runs, "base_with_text": base, "decoding": decoding,
         "remeasured": {"from": str(run_dir), "decoding": m.get("decoding", "prompt")},
         "stage_seconds": {**m["stage_seconds"], **measured}, "torch_threads": torch.get_num_threads(),
         "wall_seconds": round(m["stage_seconds"].get("training", 0.0) + sum(measured.values()), 1)}
    save_demo_outputs(m, out)
    return out


def _load(run_dir: Path, name: str, seed: int) -> SteerableModel:
    model_dir = run_dir / "models" / f"{name}-seed{seed}"
    if not model_dir.exists():
        raise FileNotFoundError(f"demo --remeasure: {model_dir} not found: the run's models are needed "
                                "(runs save them under RUN_DIR/models)")
    return load_steerable(model_dir)  # the kernel the demo measured it with

