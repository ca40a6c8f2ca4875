"""A judge behind any OpenAI-compatible chat endpoint (LLaVA used gpt-4-0314; a local server works too).

Configured from the environment, never from files in the repository:

    LLAVA_MINI_JUDGE_URL     the endpoint's base URL, e.g. http://127.0.0.1:8000/v1 (POST {URL}/chat/completions)
    LLAVA_MINI_JUDGE_MODEL   the model name sent in the request
    LLAVA_MINI_JUDGE_KEY     the bearer key (optional for a local server)

It sends LLaVA's system message and `judge.prompt` at temperature 0.2 with max_tokens 1024, as LLaVA's review
script does. A timeout, an HTTP error, or a reply that is not a chat completion raises `JudgeError`; the
bench counts those as errors and reports them, never as scores.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request

from llava_mini import world
from llava_mini.bench.judge import SYSTEM, prompt

ENV = ("LLAVA_MINI_JUDGE_URL", "LLAVA_MINI_JUDGE_MODEL", "LLAVA_MINI_JUDGE_KEY")


class JudgeError(Exception):
    """The endpoint gave no review: a timeout, an HTTP error, or a reply that is not a chat completion."""


class OpenAIJudge:
    name = "openai"

    def __init__(self, url: str | None = None, model: str | None = None, key: str | None = None,
                 timeout: float = 60.0, temperature: float = 0.2, max_tokens: int = 1024):
        url = url or os.environ.get(ENV[0])
        model = model or os.environ.get(ENV[1])
        if not url or not model:
            raise ValueError(f"the openai judge needs an endpoint and a model name: set {ENV[0]} (e.g. "
                             f"http://127.0.0.1:8000/v1) and {ENV[1]}, and {ENV[2]} if the server wants a key")
        self.url = url.rstrip("/") + "/chat/completions"
        self.model, self.timeout = model, timeout
        self.key = key if key is not None else os.environ.get(ENV[2], "")
        self.temperature, self.max_tokens = temperature, max_tokens

    def review(self, context: world.SymbolicContext, question: str, answer1: str, answer2: str, category: str,
               things=None) -> str:
        """The endpoint's review text (`things` is ignored: this judge knows only the context, as GPT-4 did)."""
        body = {"model": self.model, "temperature": self.temperature, "max_tokens": self.max_tokens,
                "messages": [{"role": "system", "content": SYSTEM},
                             {"role": "user", "content": prompt(context, question, answer1, answer2, category)}]}
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            raise JudgeError(f"HTTP {err.code} from {self.url}") from None
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as err:
            raise JudgeError(f"no reply from {self.url}: {getattr(err, 'reason', err)}") from None
        try:
            content = json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise JudgeError(f"{self.url} did not return a chat completion: {raw[:80]!r}") from None
        if not isinstance(content, str):
            raise JudgeError(f"{self.url} returned a non-text message: {content!r:.80}")
        return content
