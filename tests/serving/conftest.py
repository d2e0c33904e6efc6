"""The serving tier's server: `vllm_server`, a fixture factory that starts vLLM's OpenAI-compatible server
on 127.0.0.1 for a model directory and stops it when the test module ends.

vLLM's CPU build lives in its own virtual environment (`make serving-env`, .venv-vllm: its torch differs
from the project's), found through LAMBDA_DPO_VLLM_PYTHON (a Python that has vllm) or
.venv-vllm/bin/python; without one that can import vllm, the tests that ask for a server skip, naming the
make target. The server runs the model in float32 with --enforce-eager (no graph capture: it answers
sooner after start-up on a CPU) and 2 GiB of KV cache.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STARTUP_S = 900
NO_VLLM = ("no vLLM environment: run `make serving-env` (a CPU build of vLLM in .venv-vllm), or point "
           "LAMBDA_DPO_VLLM_PYTHON at a Python that has vllm")


def vllm_python() -> str | None:
    """A Python that can import vllm (a half-built environment without it counts as none)."""
    for candidate in (os.environ.get("LAMBDA_DPO_VLLM_PYTHON"), str(REPO / ".venv-vllm" / "bin" / "python")):
        if candidate and os.path.exists(candidate):
            found = subprocess.run([candidate, "-c", "import importlib.util, sys; "
                                    "sys.exit(importlib.util.find_spec('vllm') is None)"], capture_output=True)
            if found.returncode == 0:
                return candidate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_model(url: str, served: str, proc: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the vLLM server exited ({proc.returncode}):\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=5) as response:
                if served in response.read().decode():
                    return
        except OSError:
            pass
        time.sleep(2)
    pytest.fail(f"the vLLM server did not answer {url}/models within {STARTUP_S} s:\n{log_path.read_text()[-4000:]}")


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    """start(model_dir, served_name) -> the server's base URL ("http://127.0.0.1:PORT/v1"), once it lists the
    model. Without a vLLM environment the test skips at once (before any fixture requested after this one runs);
    every server started is stopped when the module ends."""
    python = vllm_python()
    if python is None:
        pytest.skip(NO_VLLM)
    started: list[subprocess.Popen] = []

    def start(model_dir: str | Path, served: str) -> str:
        port = free_port()
        log_path = tmp_path_factory.mktemp("vllm") / "server.log"
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2"}  # GiB of KV cache on the CPU
        with open(log_path, "w") as log:
            proc = subprocess.Popen([python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
                                     "--served-model-name", served, "--host", "127.0.0.1", "--port", str(port),
                                     "--enforce-eager", "--dtype", "float32", "--max-model-len", "2048"],
                                    stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        started.append(proc)
        url = f"http://127.0.0.1:{port}/v1"
        wait_for_model(url, served, proc, log_path)
        return url

    try:
        yield start
    finally:
        for proc in started:
            stop(proc)
