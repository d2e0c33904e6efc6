"""The demo, kept apart from the library (which never imports it; tests/test_layout.py checks).

- `run`: `lambda-dpo demo` (does lambda steer the model?) and `lambda-dpo ablation`;
- `data`: the embedded dataset's checkable prompts, deterministic judges and builder
  (`lambda-dpo build-data`).
"""
