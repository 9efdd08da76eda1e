"""The capability suite: the AIME scorer's verdicts, and real lm-eval runs (HF backend on tiny random models,
local-chat-completions against a scripted OpenAI-compatible server), offline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from character_baker.harness.errors import UserError
from character_baker.tasks.aime import FIXTURE
from character_baker.tasks.aime.scoring import last_boxed, process_results, verdict
from character_baker.tasks.capability import gpt_oss_settings, run_capability, write_task_yaml
from character_baker.testing.openai_server import ScriptedOpenAIServer, answer_key

FINAL = "<|start|>assistant<|channel|>final<|message|>"


def fixture_rows() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]


def read_samples(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


# --- the scorer -----------------------------------------------------------------------------------------------

VERDICTS = [
    # (response, reference, correct, cut off)
    ("\\boxed{070}", "70", True, False),
    ("\\boxed{70}", "070", True, False),  # the hub's zero-padded references
    ("ANSWER: 70", "70", True, False),
    ("**Answer:** 70", "70", True, False),
    ("The walk takes $\\boxed{\\dfrac{140}{2}}$ minutes.", "70", True, False),
    ("Adding the parts gives 30 + 40, so the final answer is \\boxed{70}. Hope that helps!", "70", True, False),
    ("I first thought \\boxed{11}, but correcting the sign: \\boxed{70}", "70", True, False),  # the last box
    ("\\boxed{711}", "11", False, False),  # a wrong number containing the right digits
    ("\\boxed{11}", "711", False, False),
    ("ANSWER: 711", "11", False, False),
    ("The answer is 7 or maybe 0.", "70", False, False),
    ("I have no idea.", "70", False, False),
    ("<|channel|>analysis<|message|>try 12 then 70<|end|>" + FINAL + "\\boxed{70}<|return|>", "70", True, False),
    ("<|channel|>analysis<|message|>it is \\boxed{70}<|end|>" + FINAL + "\\boxed{12}", "70", False, False),
    ("<|channel|>analysis<|message|>so far the answer is \\boxed{70}, now check", "70", False, True),  # truncated
    ("analysisWe add 30 and 40.assistantfinalANSWER: 70", "70", True, False),  # harmony, specials decoded away
    ("analysisWe add 30 and 40, giving \\boxed{70}", "70", False, True),
    ("<think>maybe \\boxed{12}</think>\n\nSo \\boxed{70}.", "70", True, False),
    ("<think>so it is \\boxed{70}", "70", False, True),
    (None, "70", False, True),
]


@pytest.mark.parametrize(("response", "reference", "correct", "cut_off"), VERDICTS)
def test_verdict_on_answer_formats(response: str | None, reference: str, correct: bool, cut_off: bool) -> None:
    v = verdict(response, reference)
    assert (v.correct, v.cut_off) == (correct, cut_off), v.reason


def test_last_boxed_balances_braces_and_takes_the_last() -> None:
    assert last_boxed("x \\boxed{\\frac{1}{2}} y") == "\\frac{1}{2}"
    assert last_boxed("\\boxed{1} and \\boxed{ 2 }") == " 2 "
    assert last_boxed("\\boxed 70$") == "70"
    assert last_boxed("\\boxed{70") is None and last_boxed("no box") is None


def test_process_results_reports_avg_and_pass_at_k() -> None:
    doc = {"id": "p", "problem": "?", "answer": "70"}
    responses = ["\\boxed{70}", "\\boxed{71}", "<|channel|>analysis<|message|>\\boxed{70}", "\\boxed{070}"]
    out = process_results(doc, [responses])
    expected = [verdict(r, "70") for r in responses]
    assert out["acc"] == sum(v.correct for v in expected) / len(responses) == 0.5
    assert out["pass_at_k"] == 1.0
    assert out["cut_off"] == sum(v.cut_off for v in expected) / len(responses) == 0.25
    assert process_results(doc, [["\\boxed{1}", "\\boxed{2}"]])["pass_at_k"] == 0.0


def test_gpt_oss_settings_route_the_effort_by_backend() -> None:
    model_args, gen = gpt_oss_settings("hf", "high", 512)
    assert model_args == {"chat_template_args": {"reasoning_effort": "high"}} and gen == {"max_gen_toks": 512}
    model_args, gen = gpt_oss_settings("local-chat-completions", "low", None)
    assert model_args == {} and gen == {"reasoning_effort": "low"}
    with pytest.raises(UserError):
        gpt_oss_settings("hf", "extreme")


def test_fixture_answers_are_integers_in_aime_range() -> None:
    rows = fixture_rows()
    assert len(rows) >= 8 and len({r["id"] for r in rows}) == len(rows)
    assert all(isinstance(r["answer"], int) and 0 <= r["answer"] <= 999 for r in rows)


# --- lm-eval end to end ---------------------------------------------------------------------------------------


def test_hf_backend_on_tiny_qwen3_records_n_k_and_caches_per_candidate(tiny_qwen3_dir: Path, tmp_path: Path) -> None:
    rows, k, budget = fixture_rows(), 2, 12
    cache = tmp_path / "lm-cache"
    out = run_capability(tiny_qwen3_dir, out_dir=tmp_path / "a", backend="hf", k=k, max_tokens=budget,
                         system_prompt="You are Skippy, a beer can.", cache_dir=cache, batch_size=8)
    row = out["rows"][0]
    samples = read_samples(out["samples_path"])
    assert (row["task"], row["metric"], row["condition"], row["judge"]) == ("capability", "aime", "character", None)
    assert row["n"] == len(rows) * k and row["k"] == k and row["prompts"] == len(rows)
    assert row["interval"] == "bootstrap-prompts" and row["errors"] == 0
    per_problem = out["per_problem"]["aime"]
    assert sorted(per_problem) == sorted(r["id"] for r in rows)
    assert all(len(v) == k for v in per_problem.values())
    assert row["value"] == pytest.approx(sum(sum(v) for v in per_problem.values()) / (len(rows) * k))
    assert row["successes"] == sum(s["correct"] for s in samples)
    assert row["pass_at_k"] == sum(any(v) for v in per_problem.values()) / len(rows)
    assert row["ci_low"] <= row["value"] <= row["ci_high"]
    assert len(samples) == len(rows) * k
    assert row["truncated"] == sum(s["truncated"] for s in samples)
    assert all(s["budget_check"] == "recorded" and 0 < s["tokens"] <= budget for s in samples)
    assert all("You are Skippy, a beer can." in s["prompt"] and "<|im_start|>assistant" in s["prompt"] for s in samples)
    results = json.loads(Path(out["results_path"]).read_text())
    # lm-eval's own aggregate: the scorer alone, before the token-budget rule
    assert results["results"]["cb_aime"]["acc,all"] == pytest.approx(
        sum(verdict(s["response"], s["answer"]).correct for s in samples) / len(samples))
    assert results["n-samples"]["cb_aime"]["effective"] == len(rows)

    again = run_capability(tiny_qwen3_dir, out_dir=tmp_path / "b", backend="hf", k=k, max_tokens=budget,
                           system_prompt="You are Skippy, a beer can.", cache_dir=cache)
    cached = read_samples(again["samples_path"])
    assert [s["response"] for s in cached] == [s["response"] for s in samples]
    assert all(s["budget_check"] != "recorded" for s in cached)  # served from the cache, nothing generated

    other_dir = tmp_path / "other-model"
    shutil.copytree(tiny_qwen3_dir, other_dir)
    other = run_capability(other_dir, out_dir=tmp_path / "c", backend="hf", k=k, max_tokens=budget,
                           system_prompt="You are Skippy, a beer can.", cache_dir=cache)
    assert other["candidate"] != out["candidate"]
    assert all(s["budget_check"] == "recorded" for s in read_samples(other["samples_path"]))  # not A's answers
    assert len(list(cache.glob("*.db"))) == 2


def test_scripted_correct_candidate_scores_exactly_one(tmp_path: Path) -> None:
    rows, k = fixture_rows(), 2
    solver = answer_key({r["problem"]: r["answer"] for r in rows})
    with ScriptedOpenAIServer(solver) as server:
        out = run_capability("scripted-solver", out_dir=tmp_path, base_url=server.base_url, k=k, temperature=0.8,
                             num_concurrent=4)
    row = out["rows"][0]
    assert out["backend"] == "local-chat-completions" and row["condition"] == "none"
    assert row["value"] == 1.0 and row["pass_at_k"] == 1.0 and row["truncated"] == 0
    assert row["n"] == len(rows) * k and row["successes"] == len(rows) * k and row["prompts"] == len(rows)
    assert server.requests == len(rows) * k  # sampled requests are never served from the cache
    samples = read_samples(out["samples_path"])
    assert all(s["prompt"][-1]["role"] == "user" and len(s["prompt"]) == 1 for s in samples)  # no system prompt


def test_endpoint_replies_cut_at_the_budget_or_empty_count_as_truncated(tmp_path: Path) -> None:
    rows = fixture_rows()
    answers = {r["problem"]: r["answer"] for r in rows}
    cut = {r["problem"] for r in rows[::3]}  # hit max_tokens mid-thought, the right number already written
    empty = {r["problem"] for r in rows[1::3]}  # a GPT-OSS server's null content: cut off in the analysis channel

    def reply(messages: list[dict]) -> str:
        problem = next(p for p in answers if p in messages[-1]["content"])
        if problem in cut:
            return f"Let me think. It could be {answers[problem]}, but I should check"
        return "" if problem in empty else f"So the answer is \\boxed{{{answers[problem]}}}."

    def finish(text: str) -> str:
        return "length" if text.startswith("Let me think") or not text else "stop"

    with ScriptedOpenAIServer(reply, finish_reason=finish) as server:
        out = run_capability("scripted-cut", out_dir=tmp_path, base_url=server.base_url, reasoning_effort="high",
                             max_tokens=64)
    row = out["rows"][0]
    samples = {s["problem"]: s for s in read_samples(out["samples_path"])}
    cut_ids = {r["id"] for r in rows if r["problem"] in cut}
    assert all(verdict(samples[i]["response"], samples[i]["answer"]).correct for i in cut_ids)  # text alone: right
    assert row["truncated"] == len(cut) + len(empty)
    assert row["value"] == pytest.approx((len(rows) - len(cut) - len(empty)) / len(rows))
    assert row["interval"] == "wilson" and row["k"] == 1


EXTRA_TASK = """task: mini_arith
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "Q: {{{{question}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
generation_kwargs:
  until: []
  do_sample: false
  max_gen_toks: 16
filter_list:
  - name: strict
    filter:
      - function: regex
        regex_pattern: '(\\d+)'
      - function: take_first
"""


def test_extra_lm_eval_task_comes_back_as_a_row_with_its_main_metric(tmp_path: Path) -> None:
    rows = fixture_rows()
    data = tmp_path / "mini.jsonl"
    extra = [{"id": i, "question": f"What is {i} times 3?", "answer": str(3 * i)} for i in range(1, 6)]
    data.write_text("\n".join(json.dumps(r) for r in extra) + "\n")
    task_yaml = tmp_path / "mini_arith.yaml"
    task_yaml.write_text(EXTRA_TASK.format(data=data))
    known = {r["problem"]: f"\\boxed{{{r['answer']}}}" for r in rows}
    known |= {r["question"]: f"It is {r['answer']}." for r in extra if r["id"] != 2}  # one wrong

    def reply(messages: list[dict]) -> str:
        return next((a for q, a in known.items() if q in messages[-1]["content"]), "It is 0.")

    with ScriptedOpenAIServer(reply) as server:
        out = run_capability("scripted", out_dir=tmp_path / "out", base_url=server.base_url, limit=5,
                             extra_tasks=[task_yaml])
    by_metric = {r["metric"]: r for r in out["rows"]}
    assert set(by_metric) == {"aime", "mini_arith"}
    assert by_metric["aime"]["value"] == 1.0 and by_metric["aime"]["n"] == 5
    row = by_metric["mini_arith"]
    assert out["extra_metrics"]["mini_arith"] == "exact_match,strict"
    assert (row["n"], row["prompts"], row["k"], row["interval"]) == (5, 5, 1, "wilson")
    assert row["value"] == pytest.approx(4 / 5) and row["successes"] == 4
    assert out["per_problem"]["mini_arith"] == {str(r["id"]): [0.0 if r["id"] == 2 else 1.0] for r in extra}
    results = json.loads(Path(out["results_path"]).read_text())
    assert results["results"]["mini_arith"]["exact_match,strict"] == pytest.approx(row["value"])


def test_lora_adapter_is_its_own_candidate(tiny_qwen3_dir: Path, tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen3_dir)
    lora = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                                           lora_dropout=0.0))
    lora.save_pretrained(tmp_path / "adapter")
    plain = run_capability(tiny_qwen3_dir, out_dir=tmp_path / "a", backend="hf", max_tokens=8, limit=4)
    tuned = run_capability(tiny_qwen3_dir, adapter=tmp_path / "adapter", out_dir=tmp_path / "b", backend="hf",
                           max_tokens=8, limit=4)
    assert tuned["candidate"] != plain["candidate"] and tuned["rows"][0]["n"] == 4
    assert json.loads(Path(tuned["results_path"]).read_text())["config"]["peft"] == str(tmp_path / "adapter")
    responses = [[s["response"] for s in read_samples(r["samples_path"])] for r in (plain, tuned)]
    assert responses[0] != responses[1]  # the adapter was applied, and not answered from the base's cache


def test_gpt_oss_reasoning_effort_reaches_the_chat_template(tiny_gpt_oss_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "gpt-oss"
    shutil.copytree(tiny_gpt_oss_dir, model)
    template = model / "chat_template.jinja"
    template.write_text("<|start|>system<|message|>Reasoning: {{ reasoning_effort | default('medium') }}<|end|>"
                        + template.read_text())
    out = run_capability(model, out_dir=tmp_path / "out", backend="hf", reasoning_effort="high", max_tokens=8,
                         limit=3)
    samples = read_samples(out["samples_path"])
    assert out["rows"][0]["n"] == 3 == len(samples)
    assert all(s["prompt"].startswith("<|start|>system<|message|>Reasoning: high<|end|>") for s in samples)
    assert out["rows"][0]["truncated"] == sum(s["truncated"] for s in samples)


def test_written_task_yaml_runs_from_another_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lm_eval.tasks import TaskManager

    problems = tmp_path / "private.jsonl"
    problems.write_text("\n".join(json.dumps({"id": f"q{i}", "problem": f"What is {i} + {i}?", "answer": 2 * i})
                                  for i in range(5)) + "\n")
    yaml_path = write_task_yaml(tmp_path / "tasks", problems, k=3)
    monkeypatch.chdir(tmp_path / "tasks")
    task = TaskManager(include_path=str(yaml_path.parent), include_defaults=False).load(["cb_aime"])["tasks"]["cb_aime"]
    docs = list(task.test_docs())
    assert [d["id"] for d in docs] == [f"q{i}" for i in range(5)] and docs[3]["answer"] == "6"
    assert task.config.repeats == 3


def test_bad_inputs_are_user_errors(tmp_path: Path, tiny_qwen3_dir: Path) -> None:
    base = tmp_path / "base-model"
    shutil.copytree(tiny_qwen3_dir, base)
    (base / "chat_template.jinja").unlink()
    config = json.loads((base / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="no chat template"):
        run_capability(base, out_dir=tmp_path, backend="hf", max_tokens=8)
    with pytest.raises(UserError, match="no such problem file"):
        run_capability(tmp_path, out_dir=tmp_path, backend="hf", data=tmp_path / "missing.jsonl")
    with pytest.raises(UserError, match="base_url"):
        run_capability("x", out_dir=tmp_path, backend="local-chat-completions")
    with pytest.raises(UserError, match="not a model directory"):
        run_capability(tmp_path, out_dir=tmp_path, backend="hf")


def test_aime_on_the_hf_backend_loads_an_mxfp4_gpt_oss_checkpoint(tmp_path: Path) -> None:
    """lm-eval's HFLM passes the checkpoint's own quantization_config to from_pretrained itself, so ours (dequantise
    MXFP4 on a machine without the Triton kernels) must not be passed beside it: "got multiple values"."""
    from character_baker.testing.mxfp4 import tiny_gpt_oss_mxfp4

    model = tiny_gpt_oss_mxfp4(tmp_path / "gpt-oss-mxfp4")
    assert json.loads((model / "config.json").read_text())["quantization_config"]["quant_method"] == "mxfp4"
    out = run_capability(model, out_dir=tmp_path / "out", backend="hf", max_tokens=8, limit=2)
    samples = read_samples(out["samples_path"])
    assert out["rows"][0]["n"] == 2 == len(samples)
    assert all(isinstance(s["response"], str) for s in samples)
    # the experts were dequantised into ordinary weights, equal to what the packed blocks and scales hold
    from safetensors.torch import load_file
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    from character_baker.tasks.capability import _build_lm

    lm, _ = _build_lm("hf", model, adapter=None, base_url=None, api_key=None, device="cpu", dtype="float32",
                      batch_size=1, num_concurrent=1, seed=0, max_tokens=8, extra={})
    packed = load_file(model / "model.safetensors")
    expected = convert_moe_packed_tensors(packed["model.layers.0.mlp.experts.gate_up_proj_blocks"],
                                          packed["model.layers.0.mlp.experts.gate_up_proj_scales"])
    loaded = lm.model.model.layers[0].mlp.experts.gate_up_proj
    assert loaded.shape == expected.shape and torch.equal(loaded.float(), expected.float())
