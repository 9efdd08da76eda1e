"""A tiny GPT-OSS checkpoint whose experts are stored as MXFP4, the way the real gpt-oss checkpoints store them.

MXFP4 (OCP microscaling): blocks of 32 values along the contraction dimension share one E8M0 scale (a uint8 `s`,
the scale is 2**(s - 127)); each value is an FP4 e2m1 code (sign bit, then index into 0, .5, 1, 1.5, 2, 3, 4, 6),
two codes to a uint8, the even element in the low nibble. For an expert parameter of shape (E, K, N) (`gate_up_proj`:
(E, H, 2I), `down_proj`: (E, I, H)), the checkpoint holds

    <name>_blocks  uint8 (E, N, K // 32, 16)
    <name>_scales  uint8 (E, N, K // 32)

which is what `transformers.integrations.mxfp4.convert_moe_packed_tensors` unpacks (and then transposes back to
(E, K, N)). `quantize_mxfp4` here is the exact inverse of that unpacking on values MXFP4 can represent; other values
are rounded to nearest (ties to the even code) under the smallest power-of-two scale that does not clip the block.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..rounds.tiny_models import tiny_gpt_oss

BLOCK = 32
E8M0_BIAS = 127
# e2m1 magnitudes by code 0..7; code | 8 is the negative. Same table as transformers' FP4_VALUES.
FP4_MAGNITUDES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
FP4_MAX = 6.0
EXPERT_PARAMS = ("gate_up_proj", "down_proj")
# What the released gpt-oss checkpoints carry in config.json.
QUANTIZATION_CONFIG = {
    "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens",
                               "lm_head"],
    "quant_method": "mxfp4",
}


def _scale_exponents(amax: Any) -> Any:
    """Per block: the smallest e in [-127, 127] with amax <= 6 * 2**e (float64 in, int64 out)."""
    import torch

    tiny = torch.finfo(torch.float64).tiny
    e = torch.ceil(torch.log2(torch.clamp(amax, min=tiny) / FP4_MAX)).to(torch.int64)
    # log2 is not exact: settle the boundary with exact power-of-two comparisons
    e = torch.where(amax > FP4_MAX * torch.ldexp(torch.ones_like(amax), e), e + 1, e)
    e = torch.where(amax <= FP4_MAX * torch.ldexp(torch.ones_like(amax), e - 1), e - 1, e)
    return e.clamp(-E8M0_BIAS, E8M0_BIAS)


def _fp4_codes(x: Any) -> Any:
    """Scaled values (float64) to e2m1 codes: round to nearest, ties to the even code, saturate at 6."""
    import torch

    mags = torch.tensor(FP4_MAGNITUDES, dtype=torch.float64)
    mids = (mags[1:] + mags[:-1]) / 2
    a = x.abs()
    code = torch.bucketize(a, mids, right=False)  # midpoints strictly below a: the lower neighbour on a tie
    tie = (code < len(mids)) & (a == mids[code.clamp(max=len(mids) - 1)])
    code = torch.where(tie & (code % 2 == 1), code + 1, code)
    return (code | torch.signbit(x).to(torch.int64) << 3).to(torch.uint8)


def quantize_mxfp4(w: Any) -> tuple[Any, Any]:
    """MXFP4 along the last dimension: (..., K) -> blocks uint8 (..., K // 32, 16), scales uint8 (..., K // 32)."""
    import torch

    if w.shape[-1] % BLOCK:
        raise ValueError(f"MXFP4 needs the quantised dimension to be a multiple of {BLOCK}, got {w.shape[-1]}")
    x = w.detach().to("cpu", torch.float64).contiguous().reshape(*w.shape[:-1], w.shape[-1] // BLOCK, BLOCK)
    if not torch.isfinite(x).all():
        raise ValueError("MXFP4 cannot encode inf or nan")
    e = _scale_exponents(x.abs().amax(dim=-1))
    codes = _fp4_codes(torch.ldexp(x, -e.unsqueeze(-1)))  # a power-of-two division: exact in float64
    blocks = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return blocks.contiguous(), (e + E8M0_BIAS).to(torch.uint8).contiguous()


def quantize_expert_param(param: Any) -> tuple[Any, Any]:
    """A GPT-OSS expert parameter (E, K, N) to the checkpoint's blocks (E, N, K // 32, 16), scales (E, N, K // 32)."""
    return quantize_mxfp4(param.transpose(1, 2))


def tiny_gpt_oss_mxfp4(out: str | Path, seed: int = 0, **tiny_kwargs: Any) -> Path:
    """`tiny_gpt_oss(out, seed, **tiny_kwargs)` with every layer's `mlp.experts.{gate_up_proj,down_proj}` replaced
    by `..._blocks` / `..._scales` and `quantization_config` (mxfp4) in config.json. Everything else, the expert
    biases included, stays as `tiny_gpt_oss` saved it. `hidden` must be a multiple of 32 (intermediate == hidden)."""
    from safetensors.torch import load_file, save_file

    out = tiny_gpt_oss(out, seed=seed, **tiny_kwargs)
    weights = out / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{out}: expected a single model.safetensors from tiny_gpt_oss")
    state = load_file(weights)
    packed: dict[str, Any] = {}
    for name, tensor in state.items():
        stem, _, leaf = name.rpartition(".")
        if stem.endswith("mlp.experts") and leaf in EXPERT_PARAMS:
            blocks, scales = quantize_expert_param(tensor)
            packed[f"{name}_blocks"] = blocks
            packed[f"{name}_scales"] = scales
        else:
            packed[name] = tensor
    save_file(packed, weights, metadata={"format": "pt"})

    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    config["quantization_config"] = dict(QUANTIZATION_CONFIG)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return out
