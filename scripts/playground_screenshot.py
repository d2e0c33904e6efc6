"""Screenshot of `lambda-dpo playground` in a real browser (the README's docs/playground.png).

Serves the playground for MODEL_DIR on a free local port, opens it in the system's headless
Chromium through Selenium (Debian: `apt-get install chromium chromium-driver`; `pip install
selenium`), moves the sliders, types a prompt, presses Generate, waits for the three replies and
saves a screenshot of the whole page. tests/browser/test_playground_browser.py drives the page with the same
functions.

    python scripts/playground_screenshot.py MODEL_DIR [--out docs/playground.png]
        [--set conciseness=0.8,informativeness=0.2] [--prompt "..."] [--ref-a ... --ref-b ...]
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SLIDER_STEP = 0.01  # the playground's sliders: 0..1 in steps of 0.01


def browser_missing() -> str | None:
    """Why the browser cannot be driven here (None when it can)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        return f"{' and '.join(missing)} not found (Debian: apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_browser(width: int = 1280, height: int = 1000):
    """Headless system Chromium driven by the system chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def field(driver, elem_id: str) -> str:
    """The text of the playground's text box or markdown `elem_id` as the page shows it now."""
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, elem_id)
    inputs = box.find_elements(By.CSS_SELECTOR, "textarea, input")
    return inputs[0].get_property("value") if inputs else box.text


def wait_for(driver, condition, timeout: float, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d), message=what)


def open_page(driver, url: str, timeout: float = 30) -> None:
    """Load the page and wait until it has shown the starting lambda."""
    driver.get(url)
    wait_for(driver, lambda d: field(d, "lambda"), timeout, "the page never showed lambda")


def move_slider(driver, aspect: str, value: float, timeout: float = 10) -> float:
    """Move `aspect`'s slider to `value` with the keyboard (Home, then one arrow press per step), as a
    user would; returns the value the page then shows for it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    slider = driver.find_element(By.CSS_SELECTOR, f"#slider-{aspect} input[type=range]")
    slider.send_keys(Keys.HOME + Keys.ARROW_RIGHT * round(value / SLIDER_STEP))
    number = driver.find_element(By.CSS_SELECTOR, f"#slider-{aspect} input[type=number]")
    wait_for(driver, lambda d: abs(float(number.get_property("value") or -1) - value) < SLIDER_STEP / 2, timeout,
             f"the {aspect} slider did not reach {value}")
    return float(number.get_property("value"))


def ask(driver, prompt: str, timeout: float = 120) -> dict[str, str]:
    """Type `prompt`, press Generate and wait for all three replies: {"reply", "reply-a", "reply-b", "status"}."""
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.CSS_SELECTOR, "#prompt textarea")
    box.clear()
    box.send_keys(prompt)
    wait_for(driver, lambda d: prompt in field(d, "model-prompt"), 10, "the prompt shown never included the prompt")
    driver.find_element(By.ID, "generate").click()
    wait_for(driver, lambda d: field(d, "status").startswith("done"), timeout, "the replies never arrived")
    return {elem_id: field(driver, elem_id) for elem_id in ("reply", "reply-a", "reply-b", "status")}


def screenshot(driver, out: Path) -> Path:
    """Save the whole page (the window grown until the page fits it) as a PNG."""
    for _ in range(3):
        inner, full = driver.execute_script("return [window.innerHeight, document.documentElement.scrollHeight]")
        if full <= inner:
            break
        size = driver.get_window_size()
        driver.set_window_size(size["width"], size["height"] + full - inner)
    out.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(out))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--out", default="docs/playground.png")
    parser.add_argument("--set", default="", help="slider values, aspect=value,... (others stay where they start)")
    parser.add_argument("--prompt", default="How do rainbows form?")
    parser.add_argument("--ref-a")
    parser.add_argument("--ref-b")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args(argv)
    reason = browser_missing()
    if reason:
        print(f"playground_screenshot: {reason}", file=sys.stderr)
        return 2

    from lambda_dpo.playground import launch_playground

    port = free_port()
    page = launch_playground(args.model_dir, port=port, references=(args.ref_a, args.ref_b),
                             max_new_tokens=args.max_new_tokens, block=False)
    driver = open_browser()
    try:
        open_page(driver, f"http://127.0.0.1:{port}/")
        for part in filter(None, args.set.split(",")):
            aspect, _, value = part.partition("=")
            move_slider(driver, aspect.strip(), float(value))
        shown = ask(driver, args.prompt)
        print(f"{shown['status']}\nsaved {screenshot(driver, Path(args.out))}")
    finally:
        driver.quit()
        page.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
