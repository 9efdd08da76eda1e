"""A real OpenAI-compatible HTTP server on 127.0.0.1 with scripted replies: a judge for tests, demos and benchmarks.

    python -m character_baker.testing.openai_server --mode keyword --port 8765
    export LOCAL_BASE_URL=http://127.0.0.1:8765/v1 LOCAL_API_KEY=anything
    character-baker score ... --judge openai-api/local/scripted-judge
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = Callable[[list[dict[str, Any]]], str]


def _response_text(messages: list[dict[str, Any]]) -> str:
    """The judged response inside our rubric prompt (between the second pair of <<< >>> markers)."""
    content = messages[-1].get("content", "") if messages else ""
    if isinstance(content, list):
        content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    blocks = re.findall(r"<<<\n(.*?)\n>>>", content, re.DOTALL)
    return blocks[-1] if blocks else content


def keyword_judge(messages: list[dict[str, Any]]) -> str:
    """Deterministic stand-in judge: sarcastic when the response insults a monkey; leak on assistant phrases;
    incoherent when most of it is not made of letters and spaces ("xq#@ zz9"); asked about math, correct when
    the reply's last number is the reference."""
    text = _response_text(messages).lower()
    reference = re.search(r"^Reference answer: (.+)$", str(messages[-1].get("content", "")) if messages else "",
                          re.MULTILINE)
    if reference:  # the math template: a naive grader that takes the reply's last number as its answer
        numbers = re.findall(r"-?\d+(?:\.\d+)?", text.replace(",", ""))
        return json.dumps({"correct": bool(numbers) and numbers[-1] == reference.group(1).strip()})
    coherence = 90 if sum(c.isalpha() or c.isspace() for c in text) >= 0.7 * max(1, len(text)) else 10
    sarcastic = "monkey" in text
    leak_phrase = next((p for p in ("i hope this helps", "as an ai", "how can i assist", "i'm here to help")
                        if p in text), "")
    return json.dumps({"coherence": coherence, "sarcastic": sarcastic, "personality": 8 if sarcastic else 1,
                       "leak": bool(leak_phrase),
                       "leak_evidence": leak_phrase})


def always_sarcastic(messages: list[dict[str, Any]]) -> str:
    return json.dumps({"coherence": 95, "sarcastic": True, "personality": 9, "leak": False, "leak_evidence": ""})


def garbage(messages: list[dict[str, Any]]) -> str:
    return "Honestly it is a lovely answer, I would give it a solid thumbs up!"


def answer_key(answers: dict[str, Any], template: str = "\\boxed{{{answer}}}") -> Reply:
    """A scripted solver: finds which problem (a key of `answers`) the last user message contains and replies
    `template` with its answer; a problem it does not know gets "I don't know"."""

    def reply(messages: list[dict[str, Any]]) -> str:
        content = messages[-1].get("content", "") if messages else ""
        if isinstance(content, list):
            content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
        for problem in sorted(answers, key=len, reverse=True):  # longest first: no prefix mix-ups
            if problem in content:
                return template.format(answer=answers[problem], problem=problem)
        return "I don't know."

    return reply


MODES: dict[str, Reply] = {"keyword": keyword_judge, "sarcastic": always_sarcastic, "garbage": garbage}


class ScriptedOpenAIServer:
    """Serves /v1/chat/completions with `reply(messages)`; optional per-request delay; counts requests."""

    def __init__(self, reply: Reply = keyword_judge, delay: float = 0.0, port: int = 0,
                 fail_first: int = 0, score_distribution: dict[str, float] | None = None,
                 finish_reason: Callable[[str], str] | None = None,
                 fail_when: Callable[[list[dict[str, Any]]], bool] | None = None, echo_key: bool = False,
                 hang: bool = False) -> None:
        self.reply = reply
        # when set: requests are read and never answered until the server stops (an endpoint that hangs)
        self.hang = hang
        self._closing = threading.Event()
        # when set: error bodies repeat the request's bearer token, as a careless provider does
        self.echo_key = echo_key
        # when set: requests whose messages it accepts get HTTP 400 (a failure no retry will fix)
        self.fail_when = fail_when
        # when set: the choice's finish_reason for a reply text ("length" scripts a reply cut at the token budget)
        self.finish_reason = finish_reason
        # when set and the request asks for logprobs: the probabilities of the personality score's token
        self.score_distribution = score_distribution
        self.delay = delay
        self.fail_first = fail_first
        self.requests = 0
        self.headers_seen: list[dict[str, str]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": "scripted-judge", "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests += 1
                    n = server.requests
                    server.headers_seen.append(dict(self.headers))
                if server.hang:
                    server._closing.wait()
                    return
                if server.delay:
                    time.sleep(server.delay)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                echo = f" (key {self.headers.get('Authorization', '')})" if server.echo_key else ""
                if n <= server.fail_first:
                    self._send(500, {"error": {"message": "scripted failure" + echo}})
                    return
                if server.fail_when is not None and server.fail_when(body.get("messages", [])):
                    self._send(400, {"error": {"message": "scripted permanent failure" + echo}})
                    return
                text = server.reply(body.get("messages", []))
                finish = server.finish_reason(text) if server.finish_reason else "stop"
                choice: dict[str, Any] = {"index": 0, "finish_reason": finish,
                                          "message": {"role": "assistant", "content": text}}
                if body.get("logprobs"):
                    choice["logprobs"] = {"content": server.logprobs(text)}
                self._send(200, {
                    "id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", "scripted-judge"),
                    "choices": [choice],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
                })

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def logprobs(self, text: str) -> list[dict[str, Any]]:
        """Token logprobs for `text`: certain everywhere, except the personality score's token when a
        `score_distribution` is scripted."""
        import math

        out: list[dict[str, Any]] = []
        seen = ""
        for token in re.findall(r"\s*(?:\d+|\w+|[^\w\s])", text):
            top = [{"token": token, "logprob": 0.0, "bytes": list(token.encode())}]
            if self.score_distribution and re.search(r'"personality"\s*:\s*$', seen) and token.strip().isdigit():
                top = [{"token": t, "logprob": math.log(p), "bytes": list(t.encode())}
                       for t, p in self.score_distribution.items()]
            out.append({"token": token, "logprob": top[0]["logprob"], "bytes": list(token.encode()),
                        "top_logprobs": top})
            seen += token
        return out

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> ScriptedOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(MODES), default="keyword")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    with ScriptedOpenAIServer(MODES[args.mode], delay=args.delay, port=args.port) as server:
        print(f"serving {args.mode} judge at {server.base_url} (Ctrl-C to stop)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
