"""Turning (prompt, response) pairs into token ids with an assistant-only mask, through the model's chat template."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..harness.data import Pair
from ..harness.errors import UserError


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]  # -100 outside the assistant's reply
    category: str | None


def encode(tokenizer: Any, pair: Pair, max_length: int) -> Encoded:
    """The rendered prompt must be a prefix of the rendered conversation; the rest is the assistant's reply."""
    messages = ([{"role": "system", "content": pair.system}] if pair.system else []) + [
        {"role": "user", "content": pair.prompt}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": pair.response}], tokenize=False)
    if not full.startswith(prompt):
        raise UserError("the chat template does not render the prompt as a prefix of the conversation; "
                        "cannot mask the assistant's tokens")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    reply_ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
    ids = (prompt_ids + reply_ids)[:max_length]
    labels = ([-100] * len(prompt_ids) + reply_ids)[:max_length]
    return Encoded(ids, labels, pair.category)


def collate(batch: list[Encoded], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors for training and profiling."""
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, e in enumerate(batch):
        ids[i, : len(e.input_ids)] = torch.tensor(e.input_ids)
        labels[i, : len(e.labels)] = torch.tensor(e.labels)
        mask[i, : len(e.input_ids)] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}
