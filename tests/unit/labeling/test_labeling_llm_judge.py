"""The LLM judge against a real HTTP server on 127.0.0.1 that answers as an OpenAI-compatible endpoint:
strict parsing, retries with back-off, the timeout, the concurrency limit, failures counted as missing."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lambda_dpo.labeling.judges import LLMJudge, RateInput, build_judge, parse_rating
from lambda_dpo.labeling.judges.llm_judge import judge_messages


class FakeEndpoint:
    """A chat-completions server; `answer(body, n)` -> (status, answer text or raw body, delay s) for request n."""

    def __init__(self, answer):
        self.answer = answer
        self.requests: list[dict] = []
        self.times: list[float] = []
        self.active = self.peak = 0
        self.lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with endpoint.lock:
                    n = len(endpoint.requests)
                    endpoint.requests.append({"body": body, "path": self.path,
                                              "auth": self.headers.get("Authorization")})
                    endpoint.times.append(time.monotonic())
                    endpoint.active += 1
                    endpoint.peak = max(endpoint.peak, endpoint.active)
                try:
                    status, text, delay = endpoint.answer(body, n)
                    time.sleep(delay)
                    if isinstance(text, bytes):
                        payload = text
                    else:
                        payload = json.dumps({"id": "x", "object": "chat.completion", "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop"}]}).encode()
                    try:
                        self.send_response(status)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                    except (BrokenPipeError, ConnectionResetError):
                        pass  # the client gave up (its timeout)
                finally:
                    with endpoint.lock:
                        endpoint.active -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


ITEM = RateInput(({"role": "user", "content": "What is 2+2?"},), ("4", "Four, since 2+2=4.", "5"), {})


def judge(url, **kw):
    settings = dict(base_url=url, model="judge-model", rubrics={"correctness": "5: right; 1: wrong."}, backoff=0.01,
                    timeout=5, max_retries=2)
    settings.update(kw)
    return LLMJudge(**settings)


@pytest.mark.parametrize("answer, expected", [
    ("4", (4, None)), (" 5\n", (5, None)), ("Rating: 3", (3, None)), ("score: 2", (2, None)), ("4/5", (4, None)),
    ("1.", (1, None)), ("**4**", (4, None)),
    ("four", (None, "unparseable")), ("6", (None, "out_of_range")), ("0", (None, "out_of_range")),
    ("Rating: 7", (None, "out_of_range")), ("4.5", (None, "out_of_range")), ("", (None, "empty_answer")),
    (None, (None, "empty_answer")), ("4 because it is right", (None, "unparseable")), ("3 or 4", (None, "unparseable")),
    ("**4", (None, "unparseable")), ("I'd say 4", (None, "unparseable")),
])
def test_answers_are_parsed_strictly(answer, expected):
    assert parse_rating(answer) == expected


def test_ratings_from_the_endpoint_and_unparseable_answers_are_missing_with_a_reason():
    answers = {"4": "4", "Four, since 2+2=4.": "four", "5": "Rating: 2"}

    def answer(body, n):
        reply = body["messages"][1]["content"].split("[assistant, the reply to rate]\n")[1].split("\n\nRate")[0]
        return 200, answers[reply], 0

    with FakeEndpoint(answer) as server:
        out = judge(server.url).rate([ITEM], [{"correctness": [0, 1, 2]}])[0]
    assert out.values == {"correctness": [4.0, None, 2.0]}
    assert out.reasons == {"correctness": {1: "unparseable"}}
    body = server.requests[0]["body"]
    assert server.requests[0]["path"] == "/v1/chat/completions"
    assert body["model"] == "judge-model" and body["temperature"] == 0 and body["max_tokens"] == 8
    assert body["messages"][0]["role"] == "system" and "5: right; 1: wrong." in body["messages"][0]["content"]
    assert body["messages"] == judge_messages(ITEM.prompt, body["messages"][1]["content"].split(
        "[assistant, the reply to rate]\n")[1].split("\n\nRate")[0], "correctness", "5: right; 1: wrong.")


def test_only_the_replies_asked_for_are_requested():
    with FakeEndpoint(lambda body, n: (200, "3", 0)) as server:
        out = judge(server.url).rate([ITEM], [{"correctness": [1]}])[0]
    assert len(server.requests) == 1 and out.values["correctness"] == [None, 3.0, None]
    assert out.reasons["correctness"] == {}


def test_a_server_error_is_retried_with_back_off_then_succeeds():
    with FakeEndpoint(lambda body, n: (500, b"oops", 0) if n < 2 else (200, "5", 0)) as server:
        value = judge(server.url, backoff=0.2).ask(ITEM, 0, "correctness")
    assert value == (5, None) and len(server.requests) == 3
    gaps = [b - a for a, b in zip(server.times, server.times[1:])]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4  # backoff * 2**attempt


def test_a_request_that_keeps_failing_is_a_missing_rating_named_by_its_last_failure():
    with FakeEndpoint(lambda body, n: (503, b"busy", 0)) as server:
        out = judge(server.url, max_retries=2).rate([ITEM], [{"correctness": [0]}])[0]
    assert out.values["correctness"][0] is None and out.reasons["correctness"] == {0: "http_503"}
    assert len(server.requests) == 3  # one try and two retries


def test_a_client_error_is_not_retried():
    with FakeEndpoint(lambda body, n: (400, b'{"error": "bad model"}', 0)) as server:
        assert judge(server.url).ask(ITEM, 0, "correctness") == (None, "http_400")
    assert len(server.requests) == 1


def test_a_body_that_is_not_a_chat_completion_is_a_bad_response():
    with FakeEndpoint(lambda body, n: (200, b'{"choices": []}', 0)) as server:
        assert judge(server.url).ask(ITEM, 0, "correctness") == (None, "bad_response")


def test_the_timeout_is_honoured_and_retried():
    with FakeEndpoint(lambda body, n: (200, "4", 1.5) if n == 0 else (200, "2", 0)) as server:
        start = time.monotonic()
        value = judge(server.url, timeout=0.3, max_retries=1).ask(ITEM, 0, "correctness")
        took = time.monotonic() - start
    assert value == (2, None) and len(server.requests) == 2 and took < 1.4
    with FakeEndpoint(lambda body, n: (200, "4", 1.0)) as server:
        assert judge(server.url, timeout=0.2, max_retries=0).ask(ITEM, 0, "correctness") == (None, "timeout")


def test_no_server_is_a_connection_error():
    with FakeEndpoint(lambda body, n: (200, "4", 0)) as server:
        url = server.url
    assert judge(url, max_retries=1).ask(ITEM, 0, "correctness") == (None, "connection_error")


def test_at_most_concurrency_requests_are_in_flight():
    items = [RateInput(ITEM.prompt, tuple(f"reply {i}" for i in range(6)), {}) for _ in range(2)]
    with FakeEndpoint(lambda body, n: (200, "3", 0.15)) as server:
        out = judge(server.url, concurrency=3).rate(items, [{"correctness": list(range(6))}] * 2)
    assert len(server.requests) == 12 and server.peak == 3
    assert all(r.values["correctness"] == [3.0] * 6 for r in out)


def test_the_api_key_comes_from_the_environment_and_is_not_described(monkeypatch):
    monkeypatch.setenv("LABEL_TEST_KEY", "sk-secret")
    with FakeEndpoint(lambda body, n: (200, "4", 0)) as server:
        j = judge(server.url, api_key_env="LABEL_TEST_KEY")
        j.ask(ITEM, 0, "correctness")
    assert server.requests[0]["auth"] == "Bearer sk-secret"
    assert "sk-secret" not in json.dumps(j.describe())


def test_config_errors_name_the_setting():
    with pytest.raises(ValueError, match="rubrics"):
        build_judge({"type": "llm", "base_url": "http://x/v1", "model": "m", "rubrics": {}})
    with pytest.raises(ValueError, match="unknown key 'rubric'. Did you mean rubrics"):
        build_judge({"type": "llm", "base_url": "http://x/v1", "model": "m", "rubric": {"a": "b"}})
    with pytest.raises(ValueError, match="concurrency"):
        build_judge({"type": "llm", "base_url": "http://x/v1", "model": "m", "rubrics": {"a": "b"}, "concurrency": 0})
