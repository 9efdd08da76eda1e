"""Bakes as ranks under `accelerate launch`, proven on the CPU with real gloo processes: two ranks train what one
process trains (the profile summed over ranks, the LoRA weights), the shipped configs load as accelerate reads
them, a config the box cannot run is refused before anything starts, and a killed rank ends the bake in one line
that a rerun resumes from."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

from character_baker.bakers.distributed import CONFIGS, expected_kind, failure, train_in_ranks
from character_baker.bakers.lora.pushpull import PushPullBaker
from character_baker.bakers.profile import Profile
from character_baker.bakers.recipe import load_recipe
from character_baker.harness.errors import UserError

from .test_bakers import write_recipe

TRAIN = {"max_steps": 4, "save_steps": 2, "lora_dropout": 0.0, "learning_rate": 3e-3}


def recipe_in(folder: Path, base: Path, processes: int, batch: int, accumulate: int, **extra: dict):  # type: ignore[no-untyped-def,type-arg]
    folder.mkdir(parents=True, exist_ok=True)
    train = {**TRAIN, "batch_size": batch, "grad_accum": accumulate, **extra.pop("train", {})}
    return load_recipe(write_recipe(folder, base, train=train, distributed={"processes": processes}, **extra))


@pytest.mark.parametrize("fixture", ["tiny_qwen3_dir", "tiny_gpt_oss_dir"])
def test_two_ranks_train_what_one_process_trains(fixture: str, request: pytest.FixtureRequest,
                                                 tmp_path: Path) -> None:
    base: Path = request.getfixturevalue(fixture)
    # one global batch of 8 either way: one process accumulating two batches of 4, or two ranks of 4 each
    one = recipe_in(tmp_path / "one", base, 1, 4, 2)
    two = recipe_in(tmp_path / "two", base, 2, 4, 1)
    PushPullBaker().train_ranks(one, device="cpu", progress=False)  # the same code as a rank, alone
    train_in_ranks(two, progress=False)

    done = json.loads((two.output / "train" / "done.json").read_text())
    assert done["ranks"] == 2 and done["parallel"] == "MULTI_CPU" and done["steps"] == 4
    assert json.loads((one.output / "train" / "done.json").read_text())["ranks"] == 1

    a, b = Profile.load(one.output / "profile"), Profile.load(two.output / "profile")
    assert a.layers == b.layers and a.tokens == b.tokens  # every example profiled once, by one rank or the other
    for layer in a.layers:
        assert torch.equal(a.push[layer], b.push[layer]) and torch.equal(a.pull[layer], b.pull[layer])
        for name in ("mean_character", "mean_antipole", "sd", "effect"):
            torch.testing.assert_close(getattr(a, name)[layer], getattr(b, name)[layer], rtol=1e-6, atol=1e-7)
    if a.routing is not None:  # MoE: each example's expert choices, gathered back into one process's order
        assert b.routing is not None
        for s in ("character", "antipole"):
            torch.testing.assert_close(a.routing.counts[s], b.routing.counts[s], rtol=0, atol=0)
            assert torch.equal(a.routing.category[s], b.routing.category[s])
        torch.testing.assert_close(a.routing.logit_sd, b.routing.logit_sd, rtol=1e-6, atol=1e-7)

    first = load_file(str(one.output / "train" / "checkpoint-2" / "adapter_model.safetensors"))
    x = load_file(str(one.output / "train" / "checkpoint-4" / "adapter_model.safetensors"))
    y = load_file(str(two.output / "train" / "checkpoint-4" / "adapter_model.safetensors"))
    assert sorted(x) == sorted(y) and any(k.endswith("lora_B.weight") for k in x)
    assert all(x[k].abs().max() > 0 for k in x)  # trained: lora_B left zero
    assert any(not torch.equal(first[k], x[k]) for k in x)  # and moving from step to step
    for k in x:
        torch.testing.assert_close(x[k], y[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("baker", ["sft", "dpo", "sdft"])
def test_every_lora_baker_trains_as_two_ranks(baker: str, tiny_qwen3_dir: Path, tmp_path: Path) -> None:
    """The other LoRA bakers' Trainers (plain, TRL's DPO, sdft's restatements written by rank 0 first) run as two
    gloo ranks to their last checkpoint. grpo runs the same path, but each of its ranks builds the reward's
    embedded classifier, minutes from the empty cache a test starts with (benchmarks/RESULTS.md has its run)."""
    path = write_recipe(tmp_path, tiny_qwen3_dir, baker=baker, distributed={"processes": 2},
                        train={"max_steps": 2, "save_steps": 1, "batch_size": 2, "lora_dropout": 0.0})
    recipe = load_recipe(path)
    train_in_ranks(recipe, progress=False)
    done = json.loads((recipe.output / "train" / "done.json").read_text())
    losses = [h["loss"] for h in done["log_history"] if "loss" in h]
    assert done["ranks"] == 2 and done["parallel"] == "MULTI_CPU" and len(losses) == 2
    assert all(math.isfinite(v) for v in losses)
    assert (recipe.output / "train" / "checkpoint-2" / "adapter_model.safetensors").is_file()
    if baker == "sdft":  # restated once, by rank 0: one row per in-character pair
        rows = (recipe.output / "rewrites.jsonl").read_text().splitlines()
        assert len(rows) == len({json.loads(r)["prompt"] + json.loads(r)["reference"] for r in rows})


def test_the_shipped_accelerate_configs_read_as_accelerate_reads_them() -> None:
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    kinds = {p.stem: str(load_config_from_file(str(p)).distributed_type.value) for p in CONFIGS.glob("*.yaml")}
    assert kinds == {"ddp": "MULTI_GPU", "fsdp": "FSDP", "zero3": "DEEPSPEED"}

    def launch_env(name: str) -> dict[str, str]:
        """The environment `accelerate launch` gives the ranks for a shipped config (its own parser and env)."""
        args = launch_command_parser().parse_args(["--config_file", str(CONFIGS / f"{name}.yaml"),
                                                   "--num_processes", "8", "train.py"])
        args, defaults, _ = _validate_launch_command(args)
        if name == "zero3":
            args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
            return prepare_deepspeed_cmd_env(args)[1]
        return prepare_multi_gpu_env(args)

    fsdp = launch_env("fsdp")
    assert fsdp["ACCELERATE_USE_FSDP"] == "true" and fsdp["FSDP_VERSION"] == "2"
    saved = dict(os.environ)
    try:
        os.environ.update(fsdp)
        plugin = FullyShardedDataParallelPlugin()  # accelerate's own checks of every FSDP setting
        assert plugin.fsdp_version == 2 and plugin.state_dict_type.name == "FULL_STATE_DICT"
    finally:
        os.environ.clear()
        os.environ.update(saved)
    zero = launch_env("zero3")
    assert zero["ACCELERATE_USE_DEEPSPEED"] == "true" and zero["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "3"
    assert zero["ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL"] == "true"
    assert launch_env("ddp").get("ACCELERATE_USE_FSDP") is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="accelerate turns FSDP on for GPU ranks only (its state "
                    "never makes MULTI_CPU into FSDP); on a CPU the bake refuses it, tested below, and the config is "
                    "checked by accelerate's own loader above")
def test_fsdp_ranks_train_what_one_process_trains(tiny_qwen3_dir: Path, tmp_path: Path) -> None:
    one = recipe_in(tmp_path / "one", tiny_qwen3_dir, 1, 4, 2)
    two = recipe_in(tmp_path / "two", tiny_qwen3_dir, 2, 4, 1)
    two.distributed.strategy = "fsdp"
    PushPullBaker().train_ranks(one, device="cuda", progress=False)
    train_in_ranks(two, progress=False)
    done = json.loads((two.output / "train" / "done.json").read_text())
    assert done["parallel"] == "FSDP" and any("reg_push" in h for h in done["log_history"])  # the regulariser ran
    x = load_file(str(one.output / "train" / "checkpoint-4" / "adapter_model.safetensors"))
    y = load_file(str(two.output / "train" / "checkpoint-4" / "adapter_model.safetensors"))
    for k in x:
        torch.testing.assert_close(x[k], y[k], rtol=1e-3, atol=1e-4)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for a box without a GPU")
@pytest.mark.parametrize("strategy", ["fsdp", "zero3"])
def test_sharding_on_a_cpu_is_refused_before_anything_starts(strategy: str, tiny_qwen3_dir: Path,
                                                             tmp_path: Path) -> None:
    recipe = recipe_in(tmp_path, tiny_qwen3_dir, 2, 4, 1)
    recipe.distributed.strategy = strategy
    with pytest.raises(UserError, match="GPU ranks only; on a CPU use strategy = \"ddp\"") as e:
        train_in_ranks(recipe, progress=False)
    assert "\n" not in str(e.value)
    assert not (recipe.output / "train" / "launch.log").exists()


def test_a_custom_accelerate_config_that_is_not_one_is_named(tiny_qwen3_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "mine.yaml"
    bad.write_text("distributed_type: WARP_DRIVE\n")
    recipe = recipe_in(tmp_path, tiny_qwen3_dir, 2, 4, 1)
    recipe.distributed.accelerate_config = str(bad)
    with pytest.raises(UserError, match=r"mine\.yaml: not an accelerate config"):
        expected_kind(recipe)


def _kill_rank_one(spec: Path) -> int:
    """SIGKILL the rank-1 process of the launch whose spec is `spec`; its pid."""
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if str(spec) in cmd and "character_baker.bakers.distributed" in cmd:
            try:
                if proc.environ().get("RANK") == "1":
                    proc.send_signal(signal.SIGKILL)
                    return proc.pid
            except psutil.Error:
                continue
    raise AssertionError("no rank 1 found")


def test_a_killed_rank_ends_the_bake_in_one_line_and_the_rerun_resumes_to_candidates(
        tiny_qwen3_dir: Path, tmp_path: Path) -> None:
    settings = {"train": {"max_steps": 30, "save_steps": 10}, "merge": {"scales": [1.0]}}
    recipe = recipe_in(tmp_path, tiny_qwen3_dir, 2, 8, 1, **settings)
    train = recipe.output / "train"
    errors: list[BaseException] = []

    def bake() -> None:
        try:
            train_in_ranks(recipe, progress=False)
        except BaseException as e:  # noqa: BLE001 - the thread hands the error to the test
            errors.append(e)

    runner = threading.Thread(target=bake)
    runner.start()
    deadline = time.monotonic() + 300
    while not (train / "checkpoint-10" / "trainer_state.json").is_file():
        assert time.monotonic() < deadline and runner.is_alive(), "no checkpoint-10 appeared"
        time.sleep(0.02)
    _kill_rank_one(train / "launch.json")
    runner.join(timeout=120)
    assert not runner.is_alive() and len(errors) == 1 and isinstance(errors[0], UserError)
    message = str(errors[0])
    assert "\n" not in message and "rank 1 failed (killed by signal 9)" in message
    assert "rerunning resumes from checkpoint-" in message and str(train / "launch.log") in message
    assert not (train / "done.json").exists()
    kept = {p.name: p.stat().st_mtime_ns for p in (train / "checkpoint-10").iterdir()}
    stopped_at = max(int(p.name.split("-")[1]) for p in train.glob("checkpoint-*"))
    assert stopped_at < 30

    # the rerun is the whole bake: ranks resume the training, then the choice on dev and the merge run here
    baked = PushPullBaker().bake(recipe, progress=False)
    done = json.loads((train / "done.json").read_text())
    assert done["steps"] == 30 and done["ranks"] == 2
    assert {p.name: p.stat().st_mtime_ns for p in (train / "checkpoint-10").iterdir()} == kept  # not trained again
    steps_logged = [h["step"] for h in done["log_history"] if "loss" in h]
    assert steps_logged == list(range(1, 31))  # one history across the crash, each step once
    scored = sorted(int(p.stem.split("-")[1]) for p in (recipe.output / "selection").glob("step-*.json"))
    assert scored == [0, 10, 20, 30]  # the base and every checkpoint, scored on dev after the ranks
    assert len(baked) == 1 and (baked[0].path / "model.safetensors").is_file()
    assert baked[0].lineage["step"] in scored


def test_the_failure_line_names_a_rank_error_before_the_agent_report() -> None:
    log = ("[rank0]: Traceback (most recent call last):\n[rank0]:   File \"x.py\", line 1\n"
           "[rank0]: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
           "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:\n"
           "  time      : 2026-12-06_14:00:00\n  host      : box\n  rank      : 0 (local_rank: 0)\n"
           "  exitcode  : 1 (pid: 42)\n")
    assert failure(log) == "rank 0 failed (exit code 1): [rank0]: RuntimeError: CUDA out of memory. Tried to " \
                           "allocate 2.00 GiB"
    assert failure("x\ncharacter-baker rank 1: training stopped: loss is not finite at step 3\n") == \
        "character-baker rank 1: training stopped: loss is not finite at step 3"
    assert failure("") == "the launch failed"


@pytest.mark.parametrize("table, message", [
    ({"strategy": "zero2"}, "[distributed] strategy = 'zero2': use ddp, fsdp, zero3"),
    ({"processes": 3, "nodes": 2}, "whole number of processes per node"),
    ({"processes": 0}, "need processes >= 1"),
    ({"gpu_memory_gb": -80}, "gpu_memory_gb = -80"),
    ({"accelerate_config": "nowhere.yaml"}, "accelerate_config = 'nowhere.yaml': no such file"),
    ({"processes": "8"}, "[distributed].processes: expected int, got str"),
    ({"gpus": 8}, "unknown key"),
])
def test_a_bad_distributed_table_is_one_line(table: dict, message: str, tiny_qwen3_dir: Path,  # type: ignore[type-arg]
                                             tmp_path: Path) -> None:
    path = write_recipe(tmp_path, tiny_qwen3_dir, distributed=table)
    with pytest.raises(UserError) as e:
        load_recipe(path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_bakers_that_train_nothing_refuse_ranks(tiny_qwen3_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="the steer baker trains nothing"):
        load_recipe(write_recipe(tmp_path, tiny_qwen3_dir, baker="steer", distributed={"processes": 2}))
