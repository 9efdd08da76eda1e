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
    messages = pair.prompt_messages()
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


def pack_batch(batch: list[Encoded], pad_id: int, width: int = 160) -> dict[str, Any]:
    """The same batch as `collate`, laid end to end in rows of `width` tokens instead of one padded row each.

    Why: random batches of short replies are a third padding, and padding costs as much compute as text. Each
    example keeps its own positions (0, 1, …); transformers reads a restart of `position_ids` as a new sequence
    and masks attention across it, and every example starts with a masked prompt token, so no loss crosses a
    boundary: the loss and gradients are those of `collate`'s batch, for about two thirds of the compute.
    """
    import torch

    rows: list[list[Encoded]] = []
    room: list[int] = []
    for e in sorted(batch, key=lambda e: -len(e.input_ids)):  # first fit, longest first
        n = len(e.input_ids)
        if n and e.labels[0] != -100:
            raise ValueError("pack needs each example to start with a masked (prompt) token")
        i = next((i for i, r in enumerate(room) if r >= n), None)
        if i is None:
            rows.append([])
            room.append(max(width, n))
            i = len(rows) - 1
        rows[i].append(e)
        room[i] -= n
    span = max(sum(len(e.input_ids) for e in r) for r in rows)
    ids = torch.full((len(rows), span), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), span), -100, dtype=torch.long)
    positions = torch.zeros((len(rows), span), dtype=torch.long)
    for i, row in enumerate(rows):
        at = 0
        for e in row:
            n = len(e.input_ids)
            ids[i, at:at + n] = torch.tensor(e.input_ids)
            labels[i, at:at + n] = torch.tensor(e.labels)
            positions[i, at:at + n] = torch.arange(n)
            at += n
        positions[i, at:] = torch.arange(span - at)  # the padded tail is a sequence of its own, with no labels
    # no cache: transformers looks for packed sequences only when it builds none (training)
    return {"input_ids": ids, "labels": labels, "position_ids": positions, "use_cache": False}
