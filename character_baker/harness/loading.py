"""Loading local checkpoints for generation: any causal LM, Qwen3-VL, GPT-OSS (MXFP4 dequantised), LoRA at a scale.

Weights load as safetensors only; remote code only when asked for.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError

# GPT-OSS's reasoning levels: a chat-template variable locally, the request field `reasoning_effort` on an endpoint
REASONING_EFFORTS = ("low", "medium", "high")
VL_MODEL_TYPES = {"qwen3_vl", "qwen3_vl_moe", "qwen2_5_vl", "qwen2_vl"}


@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    model_type: str
    source: str | None = None  # the folder or hub id it was loaded from: a merged copy takes its processor files


# What a multimodal checkpoint's processor reads besides the tokenizer: a merged candidate without them cannot be
# loaded by a VL processor (AutoProcessor) or served by an engine that builds one.
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json",
                   "chat_template.json")


def copy_processor_files(source: str | None, target: Path) -> list[str]:
    """Copy the base's processor files that the target lacks; returns their names."""
    import shutil

    from .candidates import hf_snapshot

    if not source:
        return []
    folder = Path(source).expanduser()
    if not folder.is_dir():
        folder = hf_snapshot(source) or folder
    copied = []
    for name in PROCESSOR_FILES:
        if (folder / name).is_file() and not (Path(target) / name).exists():
            shutil.copyfile(folder / name, Path(target) / name)
            copied.append(name)
    return copied


def release_memory() -> None:
    """Return freed tensors' memory: collect the dropped models, then empty CUDA's cache (one model on the card
    at a time is what lets a 20B round fit)."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def pick_device(device: str | None = None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(path: str, *, adapter: str | None = None, scale: float = 1.0, dtype: str = "auto",
               device: str | None = None, trust_remote_code: bool = False) -> Loaded:
    """A ready-to-generate model; an adapter is merged at `scale` (merged == the scaled adapter)."""
    loaded = load_base(path, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
    if adapter:
        from peft import PeftModel
        from peft.helpers import rescale_adapter_scale

        peft_model = PeftModel.from_pretrained(loaded.model, adapter)
        with rescale_adapter_scale(peft_model, scale):
            loaded.model = peft_model.merge_and_unload()
        if tokenizer_source(path, adapter) != path:
            loaded.tokenizer = load_tokenizer(adapter, trust_remote_code)
    loaded.model.eval()
    return loaded


def load_base(path: str, *, dtype: str = "auto", device: str | None = None,
              trust_remote_code: bool = False) -> Loaded:
    """Weights (safetensors only) and tokenizer, by architecture: Qwen3-VL through its image-text class,
    GPT-OSS with eager attention and MXFP4 experts dequantised, anything else as a causal LM."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    device = pick_device(device)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot read a model config ({str(e).splitlines()[0]})") from None
    model_type = getattr(config, "model_type", "")
    # straight onto the device: loading on the CPU first and moving after dequantises MXFP4 on the CPU
    kwargs: dict[str, Any] = dict(dtype=_dtype(dtype, device), use_safetensors=True, device_map=device,
                                  trust_remote_code=trust_remote_code)
    if model_type == "gpt_oss":
        kwargs["attn_implementation"] = "eager"  # attention sinks: no SDPA
        quant = getattr(config, "quantization_config", None) or {}
        method = quant.get("quant_method") if isinstance(quant, dict) else getattr(quant, "quant_method", None)
        if method == "mxfp4":
            from transformers import Mxfp4Config

            kwargs["quantization_config"] = Mxfp4Config(dequantize=True)
    auto = AutoModelForImageTextToText if model_type in VL_MODEL_TYPES else AutoModelForCausalLM
    from safetensors import SafetensorError

    try:
        model = auto.from_pretrained(path, **kwargs)
    except (OSError, SafetensorError) as e:
        raise UserError(f"{path}: cannot load weights ({str(e).splitlines()[0]})") from None
    return Loaded(model=model, tokenizer=load_tokenizer(path, trust_remote_code), model_type=model_type, source=path)


def tokenizer_source(path: str, adapter: str | None = None) -> str:
    """Where a candidate's tokenizer comes from: an adapter's own when it ships one, else its base's."""
    return adapter if adapter and (Path(adapter) / "tokenizer_config.json").is_file() else path


def load_tokenizer(path: str, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def template_preamble(tokenizer: Any, template_kwargs: dict[str, Any] | None = None) -> str:
    """What the chat template writes before the user's first message when no system prompt is given. GPT-OSS's
    writes a system message calling the model ChatGPT; the harness keeps it (every server that uses the model's
    template sends it, and training renders the same template), and records it so nobody mistakes condition
    `none` for an empty context."""
    mark = "\u2063PROMPT\u2063"
    if not getattr(tokenizer, "chat_template", None):
        return ""
    text = tokenizer.apply_chat_template([{"role": "user", "content": mark}], tokenize=False,
                                         **(template_kwargs or {}))
    return str(text).split(mark)[0]


def set_template_defaults(tokenizer: Any, **defaults: str) -> None:
    """Render every chat template of this tokenizer with these values unless a call passes its own: the bake's
    training, profiling and routing renders (and TRL's, which render through the tokenizer too) then see the
    recipe's reasoning effort, as scoring does, instead of the template's own default."""
    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str) or not defaults:
        return
    preamble = "".join(f"{{%- if {k} is not defined %}}{{%- set {k} = {json.dumps(v)} %}}{{%- endif %}}"
                       for k, v in defaults.items() if v is not None and k.isidentifier())
    tokenizer.chat_template = preamble + template


def _dtype(name: str, device: str) -> Any:
    import torch

    if name == "auto":  # "auto" as a device: spread over the visible GPUs (accelerate's device map)
        return torch.bfloat16 if device.startswith("cuda") or device == "auto" else torch.float32
    try:
        return getattr(torch, name)
    except AttributeError:
        raise UserError(f"dtype '{name}' is not a torch dtype") from None


HARMONY_ASSISTANT = "<|start|>assistant"
_CHANNEL = re.compile(r"<\|channel\|>\s*(\w+)\s*<\|message\|>(.*?)(?=<\|end\|>|<\|return\|>|<\|call\|>|<\|start\|>|$)",
                      re.DOTALL)


@dataclass(frozen=True)
class Harmony:
    """A GPT-OSS reply split by channel. `truncated` means it stopped before its final channel."""

    analysis: str | None
    final: str | None
    truncated: bool


_HERMES_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_HARMONY_CALL = re.compile(
    r"to=functions\.([A-Za-z0-9_.-]+).*?<\|message\|>(.*?)(?=<\|call\|>|<\|end\|>|<\|start\|>|$)", re.DOTALL)


@dataclass
class ParsedCall:
    """A tool call read from a generation; `error` when its arguments are not a JSON object."""

    name: str
    arguments: dict[str, Any]
    error: str | None = None


def parse_tool_calls(text: str) -> tuple[str, list[ParsedCall]]:
    """The tool calls a model wrote, in the two formats these models use: Qwen's (Hermes) `<tool_call>{"name": ...,
    "arguments": {...}}</tool_call>` and GPT-OSS's harmony `to=functions.NAME ... <|message|>{...}<|call|>`; with
    the text left around them."""
    import json

    calls: list[ParsedCall] = []
    for body in _HERMES_CALL.findall(text):
        try:
            obj = json.loads(body)
        except ValueError:
            calls.append(ParsedCall("", {}, f"not JSON: {body[:80]!r}"))
            continue
        args = obj.get("arguments", {}) if isinstance(obj, dict) else None
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                args = None
        name = obj.get("name") if isinstance(obj, dict) else None
        calls.append(ParsedCall(str(name or ""), args if isinstance(args, dict) else {},
                                None if isinstance(args, dict) and name else "no name or no argument object"))
    for name, body in _HARMONY_CALL.findall(text):
        try:
            args = json.loads(body.strip() or "{}")
        except ValueError:
            calls.append(ParsedCall(name, {}, f"arguments not JSON: {body[:80]!r}"))
            continue
        calls.append(ParsedCall(name, args if isinstance(args, dict) else {},
                                None if isinstance(args, dict) else "arguments are not an object"))
    rest = _HERMES_CALL.sub("", text).strip()
    return rest, calls


def split_harmony(text: str) -> Harmony | None:
    """Split a harmony-format generation; None when the text is not in that format."""
    if "<|channel|>" not in text:
        return None
    analysis: list[str] = []
    final: list[str] = []
    for channel, body in _CHANNEL.findall(text):
        (final if channel == "final" else analysis).append(body.strip())
    return Harmony(
        analysis="\n".join(analysis) or None,
        final="\n".join(final) if final else None,
        truncated=not final,
    )


def generate_batch(loaded: Loaded, conversations: list[list[dict[str, str]]], *, max_new_tokens: int,
                   temperature: float | None = None, top_p: float | None = None, seed: int | None = None,
                   template_kwargs: dict[str, Any] | None = None) -> list[tuple[str, int, int, bool]]:
    """Generate one reply per conversation, batched: (raw text, prompt tokens, new tokens, hit the budget)."""
    import torch

    tok = loaded.tokenizer
    texts = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False, **(template_kwargs or {}))
             for c in conversations]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(loaded.model.device)
    sample = bool(temperature) and temperature > 0
    gen_kwargs: dict[str, Any] = dict(max_new_tokens=max_new_tokens, do_sample=sample, pad_token_id=tok.pad_token_id)
    if sample:
        gen_kwargs.update(temperature=temperature, top_p=top_p or 1.0)
        if seed is not None:
            torch.manual_seed(seed)
    else:
        gen_kwargs.update(temperature=None, top_p=None, top_k=None)
    with torch.no_grad():
        out = loaded.model.generate(**enc, **gen_kwargs)
    new = out[:, enc["input_ids"].shape[1]:]
    harmony = "<|channel|>" in tok.get_vocab()
    results = []
    for i, row in enumerate(new):
        ids = row.tolist()
        n_new = len(ids)
        while n_new and ids[n_new - 1] == tok.pad_token_id:
            n_new -= 1
        ids = ids[:n_new]
        stopped = bool(ids) and ids[-1] in _stop_ids(loaded)
        text = tok.decode(ids, skip_special_tokens=False)
        if harmony:  # the template may open the channel itself: parse from the assistant turn's start
            start = texts[i].rfind(HARMONY_ASSISTANT)
            text = (texts[i][start + len(HARMONY_ASSISTANT):] if start >= 0 else "") + text
        if split_harmony(text) is None:
            text = tok.decode(ids, skip_special_tokens=True)
        results.append((text, int(enc["attention_mask"][i].sum()), n_new, n_new >= max_new_tokens and not stopped))
    return results


def _stop_ids(loaded: Loaded) -> set[int]:
    ids = loaded.model.generation_config.eos_token_id
    ids = ids if isinstance(ids, list) else [ids]
    return {i for i in ids if i is not None} | {loaded.tokenizer.eos_token_id}
