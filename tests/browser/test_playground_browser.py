"""`lambda-dpo playground`: the page in a real headless browser.

The browser test serves the playground for a tiny random model directory on a free local port, drives
the system Chromium with Selenium through scripts/playground_screenshot.py's functions (move a
slider with the keyboard, type a prompt, press Generate) and checks what the page shows against the
library: the normalised lambda, the lambda text (`LambdaText.render`) and the three replies
(`generate`, greedy, same max_new_tokens). It skips, saying why and how to install them, without Chromium
and chromedriver (Debian: apt-get install chromium chromium-driver; .ci/run installs them in CI). The
playground's errors and defaults without a browser: tests/unit/test_playground.py.
"""

import importlib.util
import warnings

import pytest
from conftest import PLAYGROUND_ASPECTS, REPO

from lambda_dpo.conditioning import format_lambda
from lambda_dpo.generation import generate, load_steerable, steered_prompt_ids
from lambda_dpo.playground import default_references, launch_playground, slider_lambda

ASPECTS = PLAYGROUND_ASPECTS
NEW_TOKENS = 8
PROMPT = "Tell me about rain."
SCRIPT = REPO / "scripts" / "playground_screenshot.py"


def load_script():
    """scripts/playground_screenshot.py (not a package) as a module: the page-driving functions."""
    spec = importlib.util.spec_from_file_location("playground_screenshot", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model_dir(playground_model_dir):
    """The tiny random Llama saved as a lambda-dpo model directory (conftest's playground_model_dir)."""
    return playground_model_dir


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
