"""`lambda-dpo playground`: the page in a real headless browser, and its errors and defaults without one.

The browser test serves the playground for a tiny random model directory on a free local port, drives
the system Chromium with Selenium through scripts/playground_screenshot.py's functions (move a
slider with the keyboard, type a prompt, press Generate) and checks what the page shows against the
library: the normalised lambda, the lambda text (`LambdaText.render`) and the three replies
(`generate`, greedy, same max_new_tokens). It skips, saying why, without Chromium and chromedriver.
"""

import importlib.util
import inspect
import shutil
import sys
import warnings
from pathlib import Path

import pytest

from lambda_dpo.cli import build_parser, main
from lambda_dpo.conditioning import LambdaText, format_lambda
from lambda_dpo.generation import generate, load_steerable, steered_prompt_ids
from lambda_dpo.saved_model import write_model_files
from lambda_dpo.playground import (DEFAULT_HOST, INSTALL_HINT, default_references, launch_playground,
                                   slider_lambda)
from lambda_dpo.training.config import load_config

ASPECTS = ("conciseness", "informativeness")
NEW_TOKENS = 8
PROMPT = "Tell me about rain."
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "playground_screenshot.py"


def load_script():
    """scripts/playground_screenshot.py (not a package) as a module: the page-driving functions."""
    spec = importlib.util.spec_from_file_location("playground_screenshot", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model_dir(tiny_llama_dir, tmp_path_factory):
    """The tiny random Llama saved as a lambda-dpo model directory (full weights, prompt conditioning,
    the instructions style): what `lambda-dpo train` leaves, without the training."""
    path = tmp_path_factory.mktemp("playground") / "model"
    shutil.copytree(tiny_llama_dir, path)
    cfg = load_config(None, output_dir=str(path), model_name_or_path=str(path), conditioning="prompt",
                      use_lora=False, model_dtype="float32", aspects=list(ASPECTS), lambda_text="instructions")
    write_model_files(path, cfg, ASPECTS, {}, LambdaText("instructions"))
    return str(path)


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


def test_the_page_in_a_browser_steers_like_generate(model_dir, tmp_path, one_thread):
    pytest.importorskip("gradio")
    script = load_script()
    reason = script.browser_missing()
    if reason:
        warnings.warn(f"browser test skipped: {reason}")  # shown in the warnings summary of a plain run
        pytest.skip(reason)

    port = script.free_port()
    page = launch_playground(model_dir, port=port, max_new_tokens=NEW_TOKENS, block=False)  # default host
    driver = script.open_browser()
    try:
        assert page.server_name == "127.0.0.1"
        script.open_page(driver, f"http://127.0.0.1:{port}/")
        assert script.field(driver, "lambda") == "conciseness=0.50, informativeness=0.50"  # sliders start equal

        assert script.move_slider(driver, "conciseness", 0.3) == pytest.approx(0.3)
        values = [float(script.field(driver, f"slider-{a}")) for a in ASPECTS]
        lam = slider_lambda(ASPECTS, values)  # {conciseness: 0.375, informativeness: 0.625}
        assert lam["conciseness"] == pytest.approx(0.375)
        script.wait_for(driver, lambda d: script.field(d, "lambda") == format_lambda(lam), 10,
                        "the normalised lambda was not shown")

        shown = script.ask(driver, PROMPT)
        sm = load_steerable(model_dir)
        assert script.field(driver, "lambda-text") == sm.lambda_text.render(lam)
        assert script.field(driver, "model-prompt") == sm.tokenizer.decode(steered_prompt_ids(sm, PROMPT, lam))
        ref_a, ref_b = default_references(ASPECTS)
        assert shown["reply"] == generate(sm, [PROMPT], lam, max_new_tokens=NEW_TOKENS)[0]
        assert shown["reply-a"] == generate(sm, [PROMPT], ref_a, max_new_tokens=NEW_TOKENS)[0]
        assert shown["reply-b"] == generate(sm, [PROMPT], ref_b, max_new_tokens=NEW_TOKENS)[0]
        assert shown["status"].startswith("done: 3/3 replies")
        # the three lambdas' texts give three different replies here, so a mixed-up lambda would fail
        assert len({shown["reply"], shown["reply-a"], shown["reply-b"]}) == 3, shown

        png = script.screenshot(driver, tmp_path / "playground.png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        print(f"screenshot: {png}")
    finally:
        driver.quit()
        page.close()
