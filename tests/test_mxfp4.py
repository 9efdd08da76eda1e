"""The tiny MXFP4 GPT-OSS checkpoint: the on-disk format real gpt-oss uses, and the dequantising load path.

The reference rounding here is written independently of `character_baker.testing.mxfp4`: numpy, a brute-force search
for each block's scale, a nearest-value search over the e2m1 grid, ties to the even code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open

torch.set_num_threads(1)

SEED = 3
LAYERS = 2
HIDDEN = 64
EXPERTS = 4
PROJS = ("gate_up_proj", "down_proj")
# e2m1: code -> magnitude; bit 3 is the sign
E2M1 = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])


# ---- independent numpy reference -------------------------------------------------------------------------------------

def ref_block_exponents(amax: np.ndarray) -> np.ndarray:
    """Smallest e in [-127, 127] with amax <= 6 * 2**e, found by trying every e (127 if none fits)."""
    candidates = np.arange(-127, 128)
    fits = amax[..., None] <= 6.0 * np.ldexp(1.0, candidates)
    return np.where(fits.any(-1), candidates[fits.argmax(-1)], 127)


def ref_round_lastdim(x: np.ndarray) -> np.ndarray:
    """MXFP4 round trip along the last axis (blocks of 32), in float64."""
    x = np.asarray(x, dtype=np.float64)
    xb = x.reshape(*x.shape[:-1], x.shape[-1] // 32, 32)
    e = ref_block_exponents(np.abs(xb).max(-1))[..., None]
    scaled = np.abs(xb) / np.ldexp(1.0, e)
    dist = np.abs(scaled[..., None] - E2M1)  # (..., 32, 8)
    nearest = dist == dist.min(-1, keepdims=True)
    odd = np.arange(8) % 2 == 1
    # among equally near codes prefer the even one (a tie is always between two neighbouring codes)
    code = np.argmin(np.where(nearest, odd.astype(int), 2), axis=-1)
    out = np.copysign(E2M1[code] * np.ldexp(1.0, e), xb)
    return out.reshape(x.shape)


def ref_round_expert(w: np.ndarray) -> np.ndarray:
    """An expert parameter (E, K, N) rounded to MXFP4 in blocks of 32 along K, the contraction dimension."""
    return ref_round_lastdim(np.swapaxes(w, 1, 2)).swapaxes(1, 2).astype(np.float32)


def ref_dequantise_file(blocks: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Checkpoint tensors blocks (E, N, G, 16) + scales (E, N, G) -> the parameter (E, G * 32, N)."""
    lut = np.concatenate([E2M1, -E2M1])
    codes = np.stack([blocks & 0x0F, blocks >> 4], axis=-1).reshape(*blocks.shape[:-1], 32)  # low nibble first
    values = lut[codes] * np.ldexp(1.0, scales.astype(np.int64) - 127)[..., None]
    return values.reshape(*scales.shape[:-1], -1).swapaxes(1, 2).astype(np.float32)


# ---- fixtures --------------------------------------------------------------------------------------------------------

def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def expert_names() -> list[tuple[int, str]]:
    return [(i, proj) for i in range(LAYERS) for proj in PROJS]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from character_baker.rounds.tiny_models import tiny_gpt_oss
    from character_baker.testing.mxfp4 import tiny_gpt_oss_mxfp4

    root = tmp_path_factory.mktemp("mxfp4")
    kwargs = dict(seed=SEED, layers=LAYERS, hidden=HIDDEN, experts=EXPERTS)
    plain = tiny_gpt_oss(root / "plain", **kwargs)  # same seed: the weights before quantisation
    quant = tiny_gpt_oss_mxfp4(root / "mxfp4", **kwargs)
    original = read_safetensors(plain)
    names = [f"model.layers.{i}.mlp.experts.{proj}" for i, proj in expert_names()]
    rounded = {name: ref_round_expert(original[name].numpy()) for name in names}
    return dict(plain=plain, quant=quant, original=original, rounded=rounded)


@pytest.fixture(scope="module", params=["auto", "bfloat16"])
def loaded_pair(request: pytest.FixtureRequest, built: dict[str, Any]) -> tuple[Any, Any, torch.dtype]:
    """(the MXFP4 checkpoint dequantised by load_model, the plain checkpoint with the reference-rounded experts, the
    dtype both run in): "auto" is float32 on CPU; bfloat16 is what load_model picks on a GPU."""
    from character_baker.harness.loading import load_model

    quant = load_model(str(built["quant"]), dtype=request.param, device="cpu")
    ref = load_model(str(built["plain"]), dtype=request.param, device="cpu")
    with torch.no_grad():
        for name, value in built["rounded"].items():  # MXFP4 values are exact in bfloat16 too (2 significant bits)
            ref.model.get_parameter(name).copy_(torch.from_numpy(value))
    return quant, ref, ref.model.dtype


# ---- the reference itself --------------------------------------------------------------------------------------------

def test_reference_rounding_on_hand_picked_values() -> None:
    block = np.zeros(32)
    block[:12] = [6.0, 5.0, 4.9, 2.5, 1.25, 0.75, 0.25, 0.2, -3.5, -1.75, 0.3, -0.0]
    expected = [6.0, 4.0, 4.0, 2.0, 1.0, 1.0, 0.0, 0.0, -4.0, -2.0, 0.5, -0.0]
    for e in (-10, 0, 7):
        out = ref_round_lastdim(np.ldexp(block, e))
        np.testing.assert_array_equal(out[:12], np.ldexp(expected, e))
    # amax over 6 * 2**e takes the next scale up rather than clipping: 7.5 -> 2 * 3.75 -> 2 * 4
    np.testing.assert_array_equal(ref_round_lastdim(np.r_[7.5, np.zeros(31)])[0], 8.0)


# ---- the quantiser against transformers' dequantiser -----------------------------------------------------------------

def random_packed(gen: torch.Generator, shape: tuple[int, ...], canonical: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Random blocks (..., G, 16) and scales (..., G); canonical: each block's largest magnitude is 4 or 6."""
    codes = torch.randint(0, 16, (*shape, 32), generator=gen, dtype=torch.uint8)
    if canonical:
        magnitude = torch.randint(6, 8, shape, generator=gen, dtype=torch.uint8)  # 4 or 6
        sign = torch.randint(0, 2, shape, generator=gen, dtype=torch.uint8) << 3
        codes[..., 7] = magnitude | sign
    # 252 at most: 6 * 2**(253 - 127) would overflow float32
    scales = torch.randint(0, 253, shape, generator=gen, dtype=torch.uint8)
    return codes[..., 0::2] | (codes[..., 1::2] << 4), scales


def test_quantiser_inverts_transformers_dequantiser() -> None:
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    from character_baker.testing.mxfp4 import quantize_expert_param

    gen = torch.Generator().manual_seed(0)
    for canonical in (True, False):
        blocks, scales = random_packed(gen, (3, 40, 4), canonical)
        w = convert_moe_packed_tensors(blocks, scales, dtype=torch.float32)  # (E, K, N) = (3, 128, 40)
        assert w.shape == (3, 128, 40) and torch.isfinite(w).all()
        np.testing.assert_array_equal(ref_dequantise_file(blocks.numpy(), scales.numpy()), w.numpy())
        b2, s2 = quantize_expert_param(w)
        assert b2.dtype == s2.dtype == torch.uint8 and b2.shape == blocks.shape and s2.shape == scales.shape
        again = convert_moe_packed_tensors(b2, s2, dtype=torch.float32)
        assert torch.equal(again.view(torch.int32), w.view(torch.int32))  # bit-exact, signed zeros included
        if canonical:  # a block whose largest magnitude is 4 or 6 has exactly one encoding
            assert torch.equal(b2, blocks) and torch.equal(s2, scales)


def test_quantiser_rounds_like_the_reference() -> None:
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    from character_baker.testing.mxfp4 import quantize_expert_param

    rng = np.random.default_rng(1)
    w = rng.normal(size=(2, 96, 24)) * np.exp(rng.normal(size=(2, 1, 24)) * 3)  # spread of block scales
    w[0, :32, 0] = np.r_[6.0, 5.0, 2.5, 1.25, 0.75, 0.25, 3.5, 1.75, -5.0, -0.25, np.zeros(22)] * 2.0**-9  # ties
    w = w.astype(np.float32)
    blocks, scales = quantize_expert_param(torch.from_numpy(w))
    got = convert_moe_packed_tensors(blocks, scales, dtype=torch.float32).numpy()
    np.testing.assert_array_equal(got, ref_round_expert(w))


def test_rejects_blocks_that_do_not_divide() -> None:
    from character_baker.testing.mxfp4 import quantize_mxfp4

    with pytest.raises(ValueError, match="multiple of 32"):
        quantize_mxfp4(torch.zeros(4, 48))


# ---- the checkpoint --------------------------------------------------------------------------------------------------

def test_checkpoint_is_stored_like_gpt_oss(built: dict[str, Any]) -> None:
    config = json.loads((built["quant"] / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "mxfp4"
    assert "lm_head" in config["quantization_config"]["modules_to_not_convert"]
    assert (built["quant"] / "tokenizer.json").is_file()
    stored, original = read_safetensors(built["quant"]), built["original"]
    inter = config["intermediate_size"]
    shapes = {"gate_up_proj": (EXPERTS, 2 * inter, HIDDEN // 32), "down_proj": (EXPERTS, HIDDEN, inter // 32)}
    expected_keys = set(original)
    for i, proj in expert_names():
        name = f"model.layers.{i}.mlp.experts.{proj}"
        expected_keys = (expected_keys - {name}) | {f"{name}_blocks", f"{name}_scales"}
        blocks, scales = stored[f"{name}_blocks"], stored[f"{name}_scales"]
        assert blocks.dtype == scales.dtype == torch.uint8
        assert tuple(scales.shape) == shapes[proj] and tuple(blocks.shape) == (*shapes[proj], 16)
        dequantised = ref_dequantise_file(blocks.numpy(), scales.numpy())
        np.testing.assert_array_equal(dequantised, built["rounded"][name])
    assert set(stored) == expected_keys
    for name in expected_keys & set(original):  # everything else, expert biases included, as tiny_gpt_oss saved it
        assert torch.equal(stored[name], original[name]), name


def test_load_model_dequantises_to_the_rounded_weights(built: dict[str, Any],
                                                       loaded_pair: tuple[Any, Any, torch.dtype]) -> None:
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssExperts

    quant, _, dtype = loaded_pair
    assert quant.model_type == "gpt_oss"
    assert not getattr(quant.model, "is_quantized", False)
    assert not hasattr(quant.model.config, "quantization_config")  # dequantised: a plain model from here on
    assert all(p.dtype == dtype for p in quant.model.parameters())  # nothing left packed in uint8
    for i, proj in expert_names():
        name = f"model.layers.{i}.mlp.experts.{proj}"
        experts = quant.model.model.layers[i].mlp.experts
        assert type(experts) is GptOssExperts
        param = quant.model.get_parameter(name)
        assert param.dtype == dtype and param.is_floating_point()
        assert tuple(param.shape) == tuple(built["original"][name].shape)
        np.testing.assert_array_equal(param.detach().float().numpy(), built["rounded"][name])
        # the rounding did something, and no more than e2m1 allows: half a grid step is at most a quarter of the
        # value (|x| >= 2**e) or of the block scale 2**e < amax / 3 (smaller values)
        original = built["original"][name].numpy()
        assert not np.array_equal(built["rounded"][name], original)
        err = np.abs(built["rounded"][name] - original)
        amax = np.abs(original.swapaxes(1, 2).reshape(*original.shape[::2], -1, 32)).max(-1)
        bound = np.maximum(np.abs(original), np.repeat(amax, 32, axis=-1).swapaxes(1, 2) / 3) / 4
        assert (err <= bound).all()


def test_dequantised_logits_match_plain_model_with_rounded_experts(built: dict[str, Any],
                                                                   loaded_pair: tuple[Any, Any, torch.dtype]) -> None:
    quant, ref, dtype = loaded_pair
    ids = quant.tokenizer("Skippy the Magnificent says hello to the monkeys", return_tensors="pt")
    with torch.no_grad():
        got = quant.model(**ids).logits
        want = ref.model(**ids).logits
    # Both run in the same dtype with bit-identical weights (asserted above; MXFP4 values are exact in bfloat16
    # too) through the same eager GptOssExperts forward on one thread, so they agree exactly (observed: 0.0 in both
    # dtypes). The tolerance only allows for a different summation order: in float32 about n * eps = 64 * 1.2e-7
    # per 64-long dot product, so 1e-5 on logits of magnitude < 1; in bfloat16 two ulps at magnitude < 1
    # (2 * 2**-8). Both are far below what the MXFP4 rounding itself does to the logits (~0.17 here), checked below
    # so the comparison can tell the rounded weights from the original ones.
    atol = {torch.float32: 1e-5, torch.bfloat16: 2 * 2.0**-8}[dtype]
    assert want.abs().max() < 1
    torch.testing.assert_close(got, want, rtol=0, atol=atol)
    from character_baker.harness.loading import load_model

    unrounded = load_model(str(built["plain"]), dtype=str(dtype).removeprefix("torch."), device="cpu")
    with torch.no_grad():
        before = unrounded.model(**ids).logits
    assert (before - want).abs().max() > 10 * atol


def test_dequantised_model_generates(loaded_pair: tuple[Any, Any, torch.dtype]) -> None:
    from character_baker.harness.loading import generate_batch

    quant, ref, _ = loaded_pair
    conversation = [[{"role": "user", "content": "Who are you?"}]]
    text, n_prompt, n_new, _ = generate_batch(quant, conversation, max_new_tokens=6)[0]
    assert n_prompt > 0 and n_new > 0 and isinstance(text, str)
    assert generate_batch(ref, conversation, max_new_tokens=6)[0][:3] == (text, n_prompt, n_new)
