"""The demo, kept apart from the library (which never imports it; tests/unit/test_layout.py checks).

- `run`: `lambda-dpo demo`: trains the steered model and its controls and runs the steering protocol;
- `report`: its report.md and plots; `tables`: the Markdown helpers the reports share;
- `ablation`: `lambda-dpo ablation` (lambda sources x conditioning modes), measured by `ablation_metrics`
  (the lambda grid, mean judge scores, controllability);
- `loss_comparison` / `loss_report`: `--study losses`, listwise vs pairwise losses at equal data and compute;
- `scheduler_study` / `scheduler_report`: `--study scheduler`, the lambda source in the steering recipe,
  measured on `dev_split` (dev lists held out of the training split);
- `dataset`: the embedded dataset's checkable prompts, deterministic judges and builder
  (`lambda-dpo build-data`).
"""
