"""`lambda-dpo label` killed mid-run (SIGKILL, once its first records are on disk) and started again writes
exactly the records of an uninterrupted run: none lost, none twice, each the same."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

N_PROMPTS = 12
JUDGE = '''
import time

def judge(record, reply):
    time.sleep(0.1)  # a slow judge: the run lasts long enough to be killed in the middle
    return {"length": float(len(reply)), "words": float(len(reply.split()))}
'''


@pytest.fixture
def setup(tmp_path, tiny_llama_dir):
    (tmp_path / "slow_judge.py").write_text(JUDGE)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Question number {i}: what is {i} + {i}?", "n": i}) + "\n"
                               for i in range(N_PROMPTS)))
    config = tmp_path / "label.yaml"
    config.write_text(f"input: {prompts}\noutput: unused.jsonl\nmodel: {tiny_llama_dir}\nn_responses: 2\n"
                      "max_new_tokens: 12\nbatch_size: 2\ndevice: cpu\nslots:\n  - {system: Be brief., temperature: 1.0}\n"
                      "  - {temperature: 0.7}\njudges:\n"
                      "  - {type: callable, function: 'slow_judge:judge', aspects: [length, words]}\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    return tmp_path, config, env


def command(config, output):
    return [sys.executable, "-m", "lambda_dpo.cli", "label", str(config), "--output", str(output), "--no-progress"]


def lines(path):
    return path.read_text().splitlines() if path.exists() else []


def records(path):
    out = [json.loads(line) for line in lines(path)]
    for r in out:
        r["provenance"].pop("labeled_at")
    return out


def test_a_killed_run_resumes_without_losing_or_repeating_a_record(setup):
    tmp, config, env = setup
    whole = tmp / "whole" / "labeled.jsonl"
    done = subprocess.run(command(config, whole), env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{N_PROMPTS} lists in {whole}" in done.stdout

    cut = tmp / "cut" / "labeled.jsonl"
    proc = subprocess.Popen(command(config, cut), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not lines(cut) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    written_before = len(lines(cut))
    assert proc.returncode == -signal.SIGKILL and 0 < written_before < N_PROMPTS, (proc.returncode, written_before)

    resumed = subprocess.run(command(config, cut), env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{N_PROMPTS - written_before} written now" in resumed.stdout
    got, expected = records(cut), records(whole)
    keys = [r["provenance"]["key"] for r in got]
    assert len(keys) == len(set(keys)) == N_PROMPTS
    assert [r["n"] for r in got] == list(range(N_PROMPTS))
    assert got == expected
    sheet = json.loads((tmp / "cut" / "labeled.datasheet.json").read_text())
    assert sheet["lists"] == N_PROMPTS and sheet["run"]["done_before"] == written_before
