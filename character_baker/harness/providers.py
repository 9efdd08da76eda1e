"""Inspect model providers for candidates: `cb/<id>` (a local checkpoint, batched) and `responses/<id>` (a file).

The candidate id is the model name, so Inspect's caches and logs never mix two candidates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from inspect_ai.model import (
    ChatCompletionChoice,
    ChatMessage,
    ChatMessageAssistant,
    ContentReasoning,
    ContentText,
    GenerateConfig,
    ModelAPI,
    ModelOutput,
    ModelUsage,
    modelapi,
)
from inspect_ai.tool import ToolCall, ToolChoice, ToolInfo

from .data import iter_jsonl, require_text
from .errors import UserError

DEFAULT_MAX_TOKENS = 512
# Models already in memory (e.g. a baker's model mid-training), served as `cb/<id>` with `in_memory=<key>`.
IN_MEMORY: dict[str, Any] = {}


def client_args(model: str) -> dict[str, Any]:
    """Provider arguments for an Inspect model whose provider builds an OpenAI client: that client's own retries off
    (its default: each failed request tried twice more), so a call's attempts are the ones its caller set (Inspect's
    `max_retries`, an LLM judge's `?retries=N`) and not three times as many."""
    return {"max_retries": 0} if model.split("/", 1)[0] in ("openai", "openai-api") else {}


def _to_chat(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Inspect's messages as a chat template reads them (tool calls and tool results included)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        turn: dict[str, Any] = {"role": m.role, "content": m.text}
        calls = getattr(m, "tool_calls", None)
        if m.role == "assistant" and calls:
            turn["tool_calls"] = [{"type": "function", "function": {"name": c.function, "arguments": c.arguments}}
                                  for c in calls]
        if m.role == "tool":
            turn["name"] = getattr(m, "function", None) or ""
        out.append(turn)
    return out


def tool_schemas(tools: list[ToolInfo]) -> list[dict[str, Any]]:
    """Inspect's tool descriptions as the JSON-schema functions chat templates render."""
    return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                              "parameters": t.parameters.model_dump(exclude_none=True)}}
            for t in tools]



def tool_call_output(model: str, content: Any, calls: list[ToolCall]) -> ModelOutput:
    """A turn that ends in tool calls (Inspect runs them and asks again with their results)."""
    message = ChatMessageAssistant(content=content, model=model, source="generate", tool_calls=calls)
    return ModelOutput(model=model, choices=[ChatCompletionChoice(message=message, stop_reason="tool_calls")])

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
        self._queue: list[tuple[list[dict[str, Any]], tuple[GenerateConfig, str], asyncio.Future[ModelOutput]]] = []
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
        import json

        future: asyncio.Future[ModelOutput] = asyncio.get_running_loop().create_future()
        # requests are batched with others of the same settings and the same offered tools
        self._queue.append((_to_chat(input), (config, json.dumps(tool_schemas(tools), sort_keys=True)), future))
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

    def _run(self, conversations: list[list[dict[str, Any]]], settings: tuple[GenerateConfig, str]
             ) -> list[ModelOutput]:
        import json

        from .loading import generate_batch, parse_tool_calls, split_harmony

        config, tools_json = settings
        tools = json.loads(tools_json)
        max_tokens = config.max_tokens or DEFAULT_MAX_TOKENS
        # the reasoning effort comes with the run's GenerateConfig, as Inspect sends it to every provider (GPT-OSS's
        # template renders it into its system message; other templates ignore it)
        template_kwargs: dict[str, Any] = {"reasoning_effort": config.reasoning_effort} if config.reasoning_effort \
            else {}
        if tools:
            template_kwargs["tools"] = tools
        results = generate_batch(self.loaded, conversations, max_new_tokens=max_tokens,
                                 temperature=config.temperature, top_p=config.top_p, seed=config.seed,
                                 template_kwargs=template_kwargs)
        outputs = []
        for text, n_in, n_out, hit_budget in results:
            harmony = split_harmony(text)
            metadata: dict[str, Any] = {"raw": text} if harmony else {}
            rest, calls = parse_tool_calls(text) if tools else (text, [])
            if harmony is not None:
                content: list[Any] = []
                if harmony.analysis:
                    content.append(ContentReasoning(reasoning=harmony.analysis))
                content.append(ContentText(text=harmony.final or ""))
                truncated = harmony.truncated and not calls  # a tool call ends a turn without a final channel
            else:
                content, truncated = [ContentText(text=rest)], False
            if truncated:
                metadata["truncated"] = True
            if calls:
                out = tool_call_output(self.model_name, content, [
                    ToolCall(id=f"call_{i}", function=c.name, arguments=c.arguments, parse_error=c.error)
                    for i, c in enumerate(calls)])
            else:
                out = ModelOutput.from_content(self.model_name, content,
                                               stop_reason="max_tokens" if hit_budget or truncated else "stop")
            out.usage = ModelUsage(input_tokens=n_in, output_tokens=n_out, total_tokens=n_in + n_out)
            out.metadata = metadata or None
            outputs.append(out)
        return outputs


RESPONSE_KEYS = ("id", "condition", "response", "responses", "tool_calls")


@dataclass
class Replies:
    """A responses file as the `responses/` provider replays it: the answer (one text, or one per user turn) and
    the tool calls of each (sample id, condition or None for every condition), and the line each came from."""

    file: str
    rows: dict[tuple[str, str | None], str | list[str]] = field(default_factory=dict)
    calls: dict[tuple[str, str | None], list[dict[str, Any]]] = field(default_factory=dict)
    lines: dict[tuple[str, str | None], int] = field(default_factory=dict)

    def key(self, sample_id: str, condition: str | None) -> tuple[str, str | None]:
        """The row that answers a sample: its own condition's, else the one for every condition."""
        return (sample_id, condition) if (sample_id, condition) in self.rows else (sample_id, None)


def read_responses(file: str) -> Replies:
    """The schema of a responses file, one row a line: `{id, response}` (one answer), `{id, responses: [...]}` (one
    per user turn of a conversation), `tool_calls: [{name, arguments}]` before the answer, `condition` (a condition
    name: that condition only). Anything else is one line naming file:line."""
    import difflib

    from .character import CONDITIONS

    out = Replies(file)
    for lineno, obj in iter_jsonl(file):
        where = f"{file}:{lineno}"
        for k in obj:
            near = difflib.get_close_matches(str(k), RESPONSE_KEYS, n=1, cutoff=0.8) if k not in RESPONSE_KEYS else []
            if near:  # `respones` would leave every sample without an answer
                raise UserError(f"{where}: unknown key '{k}' (did you mean '{near[0]}'?)")
        raw_id = obj.get("id")
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or not str(raw_id).strip():
            raise UserError(f"{where}: missing or empty field 'id'")
        condition = obj.get("condition")
        if condition is not None:
            if not isinstance(condition, str):
                raise UserError(f"{where}: 'condition' must be a string (one condition a row), got "
                                f"{type(condition).__name__}")
            if condition not in CONDITIONS:
                near = difflib.get_close_matches(condition, CONDITIONS, n=1, cutoff=0.6)
                raise UserError(f"{where}: condition {condition!r} is not a condition" + (
                    f" (did you mean '{near[0]}'?)" if near else f" (conditions: {', '.join(CONDITIONS)})"))
        key = (str(raw_id), condition)
        if key in out.rows:
            raise UserError(f"{where}: duplicate response for id '{key[0]}'"
                            + (f" under condition '{key[1]}'" if key[1] else ""))
        if "responses" in obj:
            turns = obj["responses"]
            if not isinstance(turns, list) or not turns or not all(isinstance(x, str) for x in turns):
                raise UserError(f"{where}: 'responses' must be a non-empty list of strings (one per turn)")
            if "response" in obj:
                raise UserError(f"{where}: give 'response' (one answer) or 'responses' (one per turn), not both")
            out.rows[key] = turns
        elif "tool_calls" in obj and not str(obj.get("response") or "").strip():
            out.rows[key] = ""  # calls and no final answer: the scorer sees an empty reply
        else:
            out.rows[key] = require_text(obj, "response", where)
        if "tool_calls" in obj:
            calls = obj["tool_calls"]
            if not isinstance(calls, list) or not calls or not all(
                    isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("arguments"), dict)
                    for c in calls):
                raise UserError(f"{where}: 'tool_calls' must be a non-empty list of {{name, arguments}} objects")
            out.calls[key] = calls
        out.lines[key] = lineno
    return out


def check_replies(file: str, pack: Any, tasks: Sequence[str], split: str = "eval") -> Replies:
    """A responses file checked before a run builds anything: its schema (`read_responses`), then each row that
    answers a sample of the run against the sample's user turns (the pack's conversations for `drift`, one turn for
    every single-turn prompt). One `response` to a conversation would be replayed at every turn (a reply that holds
    the character once would "hold" it all conversation); replies past its last turn would be dropped. Fewer replies
    than turns are allowed: the turns without one are errors, and counted as such."""
    replies = read_responses(file)
    turns: dict[str, int] = {}
    if set(tasks) - {"drift", "tools"}:
        turns |= {p.id: 1 for kind in ("identity", "personality", "math_probes") for p in pack.prompts(kind, split)}
    if "tools" in tasks:
        turns |= {r.id: 1 for r in pack.tool_requests()}
    if "drift" in tasks:
        turns |= {c.id: len(c.turns) for c in pack.conversations(split)}
    for (sample, _), row in replies.rows.items():
        if sample not in turns:
            continue  # a reply to a sample this run does not ask (a transcript covers several runs)
        n, where = turns[sample], f"{file}:{replies.lines[(sample, _)]}"
        if n > 1 and not isinstance(row, list):
            raise UserError(f"{where}: sample '{sample}' is a conversation of {n} user turns: give 'responses', one "
                            "reply per user turn (one 'response' would answer every turn)")
        if isinstance(row, list) and len(row) > n:
            raise UserError(f"{where}: sample '{sample}' has {len(row)} replies for its {n} user turn"
                            f"{'s' if n > 1 else ''} (one reply per user turn)")
    return replies


class ResponsesAPI(ModelAPI):
    """Pre-generated answers `{id, response, condition?}` replayed per sample id, to score transcripts from anywhere.

    A row with a `condition` answers only under that condition; a row without one answers under all. A multi-turn
    sample (the drift task) takes `{id, responses: [turn 1, turn 2, ...]}`: the answer to its n-th user turn. A
    row with `tool_calls: [{name, arguments}]` makes those calls first and answers `response` once the tools
    have replied (the tools task). The file's schema is `read_responses`; `check_replies` checks it against the
    samples before a run.
    A sample with no row (or no answer for that turn) gets an empty output flagged `missing`, which scorers count
    as an error.
    """

    def __init__(self, model_name: str, base_url: str | None = None, api_key: str | None = None,
                 config: GenerateConfig = GenerateConfig(), *, file: str, **_: Any) -> None:
        super().__init__(model_name, base_url, api_key, [], config)
        self.file = file
        self.replies = read_responses(file)
        self.rows, self.calls = self.replies.rows, self.replies.calls

    def max_connections(self) -> int:
        return 64

    async def generate(self, input: list[ChatMessage], tools: list[ToolInfo], tool_choice: ToolChoice,
                       config: GenerateConfig) -> ModelOutput:
        from inspect_ai.solver._task_state import sample_state  # the current sample; no public accessor yet

        state = sample_state()
        if state is None:
            raise RuntimeError("responses candidates answer only inside an Inspect sample")
        sample_id = str(state.sample_id)
        key = self.replies.key(sample_id, (state.metadata or {}).get("condition"))
        row = self.rows.get(key)
        if key in self.calls and not any(m.role == "tool" for m in input):
            out = tool_call_output(self.model_name, "", [ToolCall(id=f"call_{i}", function=c["name"],
                                                                  arguments=c["arguments"])
                                                         for i, c in enumerate(self.calls[key])])
            out.usage = ModelUsage(input_tokens=0, output_tokens=0, total_tokens=0)
            return out
        turn = sum(1 for m in input if m.role == "user") - 1
        text = row if not isinstance(row, list) else (row[turn] if turn < len(row) else None)
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
