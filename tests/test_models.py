"""Local candidates: the three architectures load and generate, adapters merge at a scale, batching is exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from character_baker.cli import main
from character_baker.harness.candidates import resolve_candidate
from character_baker.harness.errors import UserError
from character_baker.harness.loading import generate_batch, load_model, split_harmony

CONVERSATIONS = [
    [{"role": "user", "content": "Who are you?"}],
    [{"role": "system", "content": "You are Skippy."}, {"role": "user", "content": "What is 15 × 23? Be quick."}],
    [{"role": "user", "content": "Why is the sky blue?"}],
]


def test_harmony_split() -> None:
    text = ("<|channel|>analysis<|message|>User wants 345.<|end|><|start|>assistant<|channel|>final<|message|>"
            "It's 345, monkey.<|return|>")
    h = split_harmony(text)
    assert h is not None and (h.analysis, h.final, h.truncated) == ("User wants 345.", "It's 345, monkey.", False)
    cut = split_harmony("<|channel|>analysis<|message|>Let me think about 15 times")
    assert cut is not None and cut.final is None and cut.truncated
    assert split_harmony("plain text") is None


@pytest.mark.parametrize("arch", ["qwen3", "gpt_oss", "qwen3_vl"])
def test_batched_generation_equals_one_at_a_time(arch: str, tmp_path: Path) -> None:
    from character_baker.rounds.tiny_models import BUILDERS

    loaded = load_model(str(BUILDERS[arch](tmp_path / arch)))
    assert loaded.model_type == {"qwen3": "qwen3", "gpt_oss": "gpt_oss", "qwen3_vl": "qwen3_vl"}[arch]
    batched = generate_batch(loaded, CONVERSATIONS, max_new_tokens=6)
    single = [generate_batch(loaded, [c], max_new_tokens=6)[0] for c in CONVERSATIONS]
    assert [b[0] for b in batched] == [s[0] for s in single]
    # each reply ran to the budget (6 new tokens) or stopped on a stop token before it; a random model does both
    assert all((n == 6 and hit) or (n < 6 and not hit) for _, _, n, hit in batched)
    assert any(hit for *_, hit in batched)


def _adapter(base: Path, out: Path) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(base)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(out)
    return out


def test_adapter_candidate_merges_at_its_scale(tiny_qwen3_dir: Path, tmp_path: Path) -> None:
    adapter = _adapter(tiny_qwen3_dir, tmp_path / "adapter")
    ids = torch.tensor([[5, 17, 42, 7]])
    logits = {}
    for scale in (0.0, 0.5, 1.0):
        loaded = load_model(str(tiny_qwen3_dir), adapter=str(adapter), scale=scale)
        with torch.no_grad():
            logits[scale] = loaded.model(ids).logits
    with torch.no_grad():
        base = load_model(str(tiny_qwen3_dir)).model(ids).logits
    assert torch.allclose(logits[0.0], base, atol=1e-5)
    assert not torch.allclose(logits[1.0], base, atol=1e-3)
    # LoRA is linear in its scale at first order: the half-scale output sits between base and full
    assert (logits[0.5] - base).abs().mean() < (logits[1.0] - base).abs().mean()

    cand = resolve_candidate(str(adapter), base=str(tiny_qwen3_dir), scale=0.5)
    assert cand.kind == "adapter" and cand.lineage["scale"] == 0.5 and "-s0.5-" in cand.id
    assert resolve_candidate(str(adapter), base=str(tiny_qwen3_dir), scale=1.5).id != cand.id
    out = tmp_path / "runs"
    assert main(["score", "--candidate", str(adapter), "--base", str(tiny_qwen3_dir), "--scale", "0.5",
                 "--tasks", "math_probes", "--limit", "2", "--max-tokens", "4", "--out", str(out)]) == 0
    card = json.loads((out / cand.id / "scorecard.json").read_text())
    assert card["candidate"]["lineage"]["scale"] == 0.5 and card["metrics"][0]["n"] == 2


def test_candidate_ids_follow_content(tiny_qwen3_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "tiny-qwen3"
    shutil.copytree(tiny_qwen3_dir, copy)
    a = resolve_candidate(str(copy)).id
    assert resolve_candidate(str(copy)).id == a
    (copy / "candidate.json").write_text(json.dumps({"lineage": {"round": "r5", "step": 200}}))
    b = resolve_candidate(str(copy))
    assert b.id != a and b.lineage == {"round": "r5", "step": 200}
    assert resolve_candidate(str(copy), candidate_id="mine").id == "mine"
    assert resolve_candidate("openai-api/local/gpt").kind == "inspect"
    assert resolve_candidate("inspect:mockllm/model").kind == "inspect"
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="neither config.json"):
        resolve_candidate(str(tmp_path / "empty"))


def test_gpt_oss_truncated_reply_is_marked_truncated(tiny_gpt_oss_dir: Path) -> None:
    """A harmony reply cut off before its final channel has no answer and says so."""
    import asyncio

    from inspect_ai.model import ChatMessageUser, GenerateConfig

    from character_baker.harness.providers import LocalModelAPI

    api = LocalModelAPI("cb/tiny-gpt-oss", path=str(tiny_gpt_oss_dir))
    api.loaded.tokenizer.chat_template = api.loaded.tokenizer.chat_template.replace(
        "<|start|>assistant{%- endif %}", "<|start|>assistant<|channel|>analysis<|message|>{%- endif %}")
    out = asyncio.run(api.generate([ChatMessageUser(content="What is 15 × 23?")], [], "none",
                                   GenerateConfig(max_tokens=5)))
    # the random tiny model never emits a final channel within 5 tokens
    assert out.metadata == {"raw": out.metadata["raw"], "truncated": True}
    assert out.completion == "" and out.stop_reason == "max_tokens"


def test_a_reply_cut_before_its_final_channel_fails_every_criterion(tiny_gpt_oss_dir: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPT-OSS model that reasons past its budget gives no answer; that is its failure (identity 0,
    math 0, a leak), counted in the rates and reported as its own `truncated` rate, not dropped from them (which
    would let a model that answers less look better). The reasoning effort reaches every task's chat template,
    and the scorecard records it and the template's own system message (GPT-OSS: "You are ChatGPT…")."""
    import shutil

    from character_baker.harness import loading

    model = tmp_path / "reasoner"
    shutil.copytree(tiny_gpt_oss_dir, model)
    template = model / "chat_template.jinja"
    template.write_text(template.read_text().replace(
        "<|start|>assistant{%- endif %}", "<|start|>assistant<|channel|>analysis<|message|>{%- endif %}"))
    rendered: list[str] = []
    real = loading.generate_batch

    def spy(loaded, conversations, **kwargs):  # type: ignore[no-untyped-def]
        rendered.extend(loaded.tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False,
                                                             **kwargs["template_kwargs"]) for c in conversations)
        return real(loaded, conversations, **kwargs)

    monkeypatch.setattr(loading, "generate_batch", spy)
    out = tmp_path / "runs"
    assert main(["score", "--candidate", str(model), "--tasks", "identity,math_probes,assistant_leaks", "--limit", "4",
                 "--max-tokens", "3", "--reasoning-effort", "high", "--out", str(out)]) == 0
    [card] = [json.loads(p.read_text()) for p in out.glob("*/scorecard.json")]
    rows = {(r["task"], r["metric"]): r for r in card["metrics"] if r["condition"] == "none"}
    for task, metric, failed in (("identity", "identity", 0.0), ("math_probes", "math", 0.0),
                                 ("assistant_leaks", "leak", 1.0)):
        row = rows[(task, metric)]
        assert (row["value"], row["n"], row["errors"]) == (failed, 4, 0), (task, row)
        assert rows[(task, "truncated")]["value"] == 1.0 and rows[(task, "truncated")]["n"] == 4
    assert card["truncated"] == {"identity/none": 4, "math_probes/none": 4, "assistant_leaks/none": 4}
    assert rendered and all("Reasoning: high" in r for r in rendered)
    assert card["decoding"]["reasoning_effort"] == "high"
    assert "You are ChatGPT" in card["decoding"]["template_preamble"]


def test_hub_ids_are_models_from_the_cache(tiny_qwen3_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """owner/name is a Hugging Face model (openai/gpt-oss-20b is r6's base, not the OpenAI API), found in
    the local cache and never downloaded; an Inspect provider with one slash needs the inspect: prefix."""
    import shutil


    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    for repo in ("Qwen/Qwen3-8B", "openai/gpt-oss-20b"):
        with pytest.raises(UserError, match=f"{repo}: not in the Hugging Face cache"):
            resolve_candidate(repo)
    assert main(["score", "--candidate", "openai/gpt-oss-20b", "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not in the Hugging Face cache" in err and "inspect:openai/gpt-oss-20b" in err
    root = cache / "models--Qwen--Qwen3-8B"
    old, new = root / "snapshots" / "aaa", root / "snapshots" / "bbb"
    shutil.copytree(tiny_qwen3_dir, old)
    shutil.copytree(tiny_qwen3_dir, new)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("aaa")
    cand = resolve_candidate("Qwen/Qwen3-8B")
    assert (cand.kind, cand.source, cand.model_args["path"]) == ("model", "Qwen/Qwen3-8B", str(old))
    (new / "model.safetensors").unlink()  # a snapshot without weights is not a model
    (root / "refs" / "main").write_text("bbb")
    assert resolve_candidate("Qwen/Qwen3-8B").model_args["path"] == str(old)
    assert resolve_candidate("inspect:openai/gpt-4o").source == "openai/gpt-4o"
    assert resolve_candidate("openai-api/local/gpt").kind == "inspect"


def test_no_model_survives_its_scoring(tiny_qwen3_dir: Path, tmp_path: Path) -> None:
    """Inspect memoises every model it is handed, which would keep each scored candidate in memory (on a GPU: a 20B
    bf16 copy per merge). Scoring loads, uses and releases its model."""
    import gc
    import shutil

    from transformers import PreTrainedModel


    def live() -> int:
        gc.collect()
        return sum(isinstance(o, PreTrainedModel) for o in gc.get_objects())

    before = live()
    for name in ("a", "b"):  # two different candidates, as a round scores its merges one after another
        shutil.copytree(tiny_qwen3_dir, tmp_path / name)
        assert main(["score", "--candidate", str(tmp_path / name), "--tasks", "identity", "--limit", "2",
                     "--max-tokens", "4", "--out", str(tmp_path / "runs")]) == 0
        assert live() == before


def test_a_rebuilt_model_under_the_same_id_is_generated_anew(tmp_path: Path) -> None:
    """Inspect caches generations by model name. A round names its base by the round ("demo-base-…"), so a base
    rebuilt in place would be scored with the previous base's cached replies (a new toy base would report the
    previous one's 40 % maths). The model name carries the content's fingerprint: new content, new replies."""
    import shutil

    from character_baker.rounds.tiny_models import tiny_qwen3

    model = tmp_path / "base"
    names = []
    for seed in (0, 1):
        shutil.rmtree(model, ignore_errors=True)
        tiny_qwen3(model, seed=seed)
        names.append(resolve_candidate(str(model), candidate_id="same-base").model)
    assert names[0] != names[1] and all(n.startswith("cb/same-base-") for n in names)
    # end to end, where the replies are known: a responses file rewritten under the same id
    replies = tmp_path / "replies.jsonl"
    seen = []
    for name in ("Skippy", "Qwen"):
        rows = [{"id": f"id-0{i}", "response": f"I am {name}, monkey."} for i in (1, 2)]
        replies.write_text("".join(json.dumps(r) + "\n" for r in rows))
        out = tmp_path / f"runs-{name}"
        assert main(["score", "--candidate", f"responses:{replies}", "--id", "same", "--tasks", "identity",
                     "--limit", "2", "--out", str(out)]) == 0
        card = json.loads((out / "same" / "scorecard.json").read_text())
        seen.append(set(card["examples"]["identity/none"].values()))
    assert seen == [{"I am Skippy, monkey."}, {"I am Qwen, monkey."}]


def test_the_bake_renders_under_the_recipes_reasoning_effort(tiny_gpt_oss_dir: Path) -> None:
    """Training, profiling and routing render through the base's tokenizer: with the recipe's effort as the
    template's default they see what scoring sends; a call that passes its own effort still wins."""
    from character_baker.bakers.examples import encode
    from character_baker.harness.data import Pair
    from character_baker.harness.loading import load_tokenizer, set_template_defaults

    tok = load_tokenizer(str(tiny_gpt_oss_dir))
    chat = [{"role": "user", "content": "hi"}]
    assert "Reasoning: medium" in tok.apply_chat_template(chat, tokenize=False)
    set_template_defaults(tok, reasoning_effort="low")
    assert "Reasoning: low" in tok.apply_chat_template(chat, tokenize=False)
    assert "Reasoning: high" in tok.apply_chat_template(chat, tokenize=False, reasoning_effort="high")
    rendered = tok.decode(encode(tok, Pair(prompt="hi", response="Obviously."), 512).input_ids)
    assert "Reasoning: low" in rendered
