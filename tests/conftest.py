"""Shared fixtures: offline environment, isolated caches, tiny models, a scripted judge server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("INSPECT_DISPLAY", "none")

SKIPPY_EXAMPLES = Path(__file__).resolve().parent.parent / "character_baker" / "characters" / "skippy" / "examples"


@pytest.fixture(scope="session", autouse=True)
def shared_embedder_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The distilled embedding table is built once per machine (about a minute): share it across tests,
    reusing the developer's own cache when there is one, so subprocesses do not rebuild it."""
    own = Path.home() / ".cache" / "character-baker" / "embedder"
    path = own if own.is_dir() else tmp_path_factory.mktemp("embedder")
    os.environ["CHARACTER_BAKER_EMBEDDER_CACHE"] = str(path)
    return path


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets fresh judge and Inspect caches (the trained classifier is memoised per process by data hash)."""
    root = tmp_path / "caches"
    monkeypatch.setenv("CHARACTER_BAKER_CACHE", str(root))
    monkeypatch.setenv("INSPECT_CACHE_DIR", str(root / "inspect"))
    return root


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from character_baker.rounds.tiny_models import tiny_qwen3

    return tiny_qwen3(tmp_path_factory.mktemp("models") / "tiny-qwen3")


@pytest.fixture(scope="session")
def tiny_gpt_oss_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from character_baker.rounds.tiny_models import tiny_gpt_oss

    return tiny_gpt_oss(tmp_path_factory.mktemp("models") / "tiny-gpt-oss")


@pytest.fixture
def judge_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Factory: start a scripted OpenAI-compatible judge on 127.0.0.1 and point `openai-api/local/...` at it."""
    from character_baker.testing.openai_server import ScriptedOpenAIServer, keyword_judge

    servers: list[ScriptedOpenAIServer] = []

    def start(reply=keyword_judge, delay: float = 0.0, fail_first: int = 0) -> ScriptedOpenAIServer:
        server = ScriptedOpenAIServer(reply, delay=delay, fail_first=fail_first).__enter__()
        servers.append(server)
        monkeypatch.setenv("LOCAL_BASE_URL", server.base_url)
        monkeypatch.setenv("LOCAL_API_KEY", "sk-test-SECRET-abc123456789")
        return server

    yield start
    for s in servers:
        s.__exit__(None, None, None)


@pytest.fixture(scope="session")
def tiny_qwen3_vl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from character_baker.rounds.tiny_models import tiny_qwen3_vl

    return tiny_qwen3_vl(tmp_path_factory.mktemp("models") / "tiny-qwen3-vl")
