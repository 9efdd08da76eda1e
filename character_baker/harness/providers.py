"""Inspect model providers for candidates: `cb/<id>` (a local checkpoint, batched) and `responses/<id>` (a file).

The candidate id is the model name, so Inspect's caches and logs never mix two candidates.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
from inspect_ai.model import (
    ChatMessage,
    ContentReasoning,
    ContentText,
    GenerateConfig,
    ModelAPI,
    ModelOutput,
    ModelUsage,
    modelapi,
)
from inspect_ai.tool import ToolChoice, ToolInfo

from .data import iter_jsonl, require_text
from .errors import UserError

DEFAULT_MAX_TOKENS = 512
# Models already in memory (e.g. a baker's model mid-training), served as `cb/<id>` with `in_memory=<key>`.
IN_MEMORY: dict[str, Any] = {}


def _to_chat(messages: list[ChatMessage]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.text} for m in messages]


class LocalModelAPI(ModelAPI):
    """A local checkpoint (optionally base + LoRA adapter at a scale), generating in batches.

    Inspect calls `generate` once per sample, concurrently; requests arriving together are
    gathered into one `model.generate` call of up to `batch_size` prompts, run off the event loop.
    """

    def __init__(self, model_name: str, base_url: str | None = None, api_key: str | None = None,
                 config: GenerateConfig = GenerateConfig(), *, path: str | None = None, adapter: str | None = None,
                 scale: float = 1.0, batch_size: int = 8, dtype: str = "auto", device: str | None = None,
                 trust_remote_code: bool = False, in_memory: str | None = None, **_: Any) -> None:
        super().__init__(model_name, base_url, api_key, [], config)
        from .loading import load_model

        if in_memory is not None:
            self.loaded = IN_MEMORY[in_memory]
        elif path is not None:
            self.loaded = load_model(path, adapter=adapter, scale=float(scale), dtype=dtype, device=device,
                                     trust_remote_code=bool(trust_remote_code))
        else:
            raise UserError(f"{model_name}: give the model's path (-M path=DIR)")
        self.batch_size = int(batch_size)
        self._queue: list[tuple[list[dict[str, str]], GenerateConfig, asyncio.Future[ModelOutput]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def max_connections(self) -> int:
        return self.batch_size

    def close(self) -> None:
        """Drop the model when its scoring ends, so the next candidate does not share the card with it."""
        from .loading import release_memory

        self.loaded = None
        release_memory()

    async def generate(self, input: list[ChatMessage], tools: list[ToolInfo], tool_choice: ToolChoice,
                       config: GenerateConfig) -> ModelOutput:
        future: asyncio.Future[ModelOutput] = asyncio.get_running_loop().create_future()
        self._queue.append((_to_chat(input), config, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(0.05)  # let the other samples of this wave join the batch
        while self._queue:
            head_config = self._queue[0][1]
            batch = [q for q in self._queue if q[1] == head_config][: self.batch_size]
            self._queue = [q for q in self._queue if not any(q is b for b in batch)]
            try:
                outputs = await anyio.to_thread.run_sync(self._run, [b[0] for b in batch], head_config)
            except Exception as e:  # noqa: BLE001 - hand the failure to every waiting sample
                for _, _, fut in batch:
                    fut.set_exception(e)
                continue
            for (_, _, fut), out in zip(batch, outputs):
                fut.set_result(out)

    def _run(self, conversations: list[list[dict[str, str]]], config: GenerateConfig) -> list[ModelOutput]:
        from .loading import generate_batch, split_harmony

        max_tokens = config.max_tokens or DEFAULT_MAX_TOKENS
        # the reasoning effort comes with the run's GenerateConfig, as Inspect sends it to every provider (GPT-OSS's
        # template renders it into its system message; other templates ignore it)
        template_kwargs = {"reasoning_effort": config.reasoning_effort} if config.reasoning_effort else {}
        results = generate_batch(self.loaded, conversations, max_new_tokens=max_tokens,
                                 temperature=config.temperature, top_p=config.top_p, seed=config.seed,
                                 template_kwargs=template_kwargs)
        outputs = []
        for text, n_in, n_out, hit_budget in results:
            harmony = split_harmony(text)
            metadata: dict[str, Any] = {"raw": text} if harmony else {}
            if harmony is not None:
                content: list[Any] = []
                if harmony.analysis:
                    content.append(ContentReasoning(reasoning=harmony.analysis))
                content.append(ContentText(text=harmony.final or ""))
                truncated = harmony.truncated
            else:
                content, truncated = [ContentText(text=text)], False
            if truncated:
                metadata["truncated"] = True
            out = ModelOutput.from_content(self.model_name, content,
                                           stop_reason="max_tokens" if hit_budget or truncated else "stop")
            out.usage = ModelUsage(input_tokens=n_in, output_tokens=n_out, total_tokens=n_in + n_out)
            out.metadata = metadata or None
            outputs.append(out)
        return outputs


class ResponsesAPI(ModelAPI):
    """Pre-generated answers `{id, response, condition?}` replayed per sample id, to score transcripts from anywhere.

    A row with a `condition` answers only under that condition; a row without one answers under all.
    A sample with no row gets an empty output flagged `missing`, which scorers count as an error.
    """

    def __init__(self, model_name: str, base_url: str | None = None, api_key: str | None = None,
                 config: GenerateConfig = GenerateConfig(), *, file: str, **_: Any) -> None:
        super().__init__(model_name, base_url, api_key, [], config)
        self.file = file
        self.rows: dict[tuple[str, str | None], str] = {}
        for lineno, obj in iter_jsonl(file):
            where = f"{file}:{lineno}"
            if not isinstance(obj.get("id"), (str, int)) or not str(obj["id"]).strip():
                raise UserError(f"{where}: missing or empty field 'id'")
            key = (str(obj["id"]), obj.get("condition"))
            if key in self.rows:
                raise UserError(f"{where}: duplicate response for id '{key[0]}'"
                                + (f" under condition '{key[1]}'" if key[1] else ""))
            self.rows[key] = require_text(obj, "response", where)

    def max_connections(self) -> int:
        return 64

    async def generate(self, input: list[ChatMessage], tools: list[ToolInfo], tool_choice: ToolChoice,
                       config: GenerateConfig) -> ModelOutput:
        from inspect_ai.solver._task_state import sample_state  # the current sample; no public accessor yet

        state = sample_state()
        if state is None:
            raise RuntimeError("responses candidates answer only inside an Inspect sample")
        sample_id = str(state.sample_id)
        condition = (state.metadata or {}).get("condition")
        text = self.rows.get((sample_id, condition), self.rows.get((sample_id, None)))
        if text is None:
            out = ModelOutput.from_content(self.model_name, "", stop_reason="unknown")
            out.metadata = {"missing": True}
        else:
            out = ModelOutput.from_content(self.model_name, text)
        out.usage = ModelUsage(input_tokens=0, output_tokens=0, total_tokens=0)
        return out


@modelapi(name="cb")
def cb() -> type[ModelAPI]:
    return LocalModelAPI


@modelapi(name="responses")
def responses() -> type[ModelAPI]:
    return ResponsesAPI
