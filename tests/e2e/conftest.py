"""Fixtures of the e2e tier shared by the demo and the studies' pipelines."""

import pytest

from lambda_dpo.demo.dataset.build import build_demo_dataset


@pytest.fixture(scope="module")
def tiny_data(tiny_llama_dir, tmp_path_factory):
    """The demo's dataset built afresh on the tiny model: 10 training prompts, 3 held out."""
    out = tmp_path_factory.mktemp("demo_data")
    build_demo_dataset(out, seed=1, n_prompts=10, n_eval=3, max_new_tokens=8, model=tiny_llama_dir, batch_size=8,
                       progress=False)
    return out
