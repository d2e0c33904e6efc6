"""`lambda-dpo playground` without a browser: its errors and defaults, and the page built without serving.
The page in a real headless browser: tests/browser/test_playground_browser.py.
"""

import inspect
import sys

import pytest
from conftest import PLAYGROUND_ASPECTS

from lambda_dpo.cli import build_parser, main
from lambda_dpo.generation import load_steerable
from lambda_dpo.playground import DEFAULT_HOST, INSTALL_HINT, default_references, launch_playground, slider_lambda

ASPECTS = PLAYGROUND_ASPECTS


@pytest.fixture(scope="module")
def model_dir(playground_model_dir):
    """The tiny random Llama saved as a lambda-dpo model directory (conftest's playground_model_dir)."""
    return playground_model_dir


def test_sliders_are_normalised_to_the_simplex():
    assert slider_lambda(ASPECTS, [0.3, 0.9]) == pytest.approx({"conciseness": 0.25, "informativeness": 0.75})
    assert slider_lambda(ASPECTS, [0.0, 0.4]) == {"conciseness": 0.0, "informativeness": 1.0}
    with pytest.raises(ValueError, match="sum to 0"):
        slider_lambda(ASPECTS, [0.0, 0.0])
    assert default_references(("a", "b", "c")) == ({"a": 1.0, "b": 0.0, "c": 0.0}, {"a": 0.0, "b": 1.0, "c": 0.0})


def test_binds_to_localhost_by_default():
    assert DEFAULT_HOST == "127.0.0.1"
    assert build_parser().parse_args(["playground", "some/dir"]).host == DEFAULT_HOST
    assert inspect.signature(launch_playground).parameters["host"].default == DEFAULT_HOST


def test_a_directory_that_is_not_a_model_is_a_clear_error(tmp_path, capsys):
    assert main(["playground", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'lambda_dpo.json'} not found" in err and "not a lambda-dpo model directory" in err
    assert "Traceback" not in err


def test_missing_gradio_and_a_bad_reference_are_clear_errors(model_dir, monkeypatch, capsys):
    assert main(["playground", model_dir, "--ref-a", "nonsense=1"]) == 2
    assert "unknown aspect" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` now raises ImportError
    assert main(["playground", model_dir]) == 2
    assert INSTALL_HINT in capsys.readouterr().err


def test_the_page_builds_without_serving(model_dir):
    pytest.importorskip("gradio")
    from lambda_dpo.playground import build_playground

    sm = load_steerable(model_dir)
    page = build_playground(sm, references=[{"conciseness": 0.5, "informativeness": 0.5},
                                            {"conciseness": 0.0, "informativeness": 1.0}])
    blocks = {block.elem_id: block for block in page.blocks.values() if block.elem_id}
    assert {"slider-conciseness", "slider-informativeness", "lambda", "prompt", "generate", "reply", "reply-a",
            "reply-b", "lambda-text", "model-prompt", "status"} <= set(blocks)
    assert blocks["reply-a"].label == "reference A: conciseness=0.50, informativeness=0.50"
    assert blocks["reply-b"].label == "reference B: informativeness=1.00"  # aspects at weight 0 are left out
