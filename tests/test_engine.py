"""The serving engines (serving/engine.py): a real transformers server on the CPU, and vLLM's command line and
lifecycle against a stand-in executable (vLLM cannot run here)."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from character_baker.harness.candidates import resolve_candidate
from character_baker.harness.errors import UserError
from character_baker.serving.engine import (
    EngineConfig,
    choose_engine,
    cuda_message,
    cuda_problem,
    port_free,
    serve,
    vllm_command,
)

# A stand-in for `vllm`: records its argv, serves /v1/models and /v1/chat/completions in the OpenAI shape, and
# exits (as a killed server) after $STUB_DIE_AFTER chat requests, or at once with $STUB_FAIL.
STUB = textwrap.dedent('''
    import json, os, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer
    argv = sys.argv[1:]
    with open(os.environ["STUB_ARGV_FILE"], "w") as f:
        json.dump(argv, f)
    if os.environ.get("STUB_FAIL"):
        print("ValueError: stand-in refuses to start", file=sys.stderr)
        sys.exit(3)
    name = argv[argv.index("--served-model-name") + 1]
    port = int(argv[argv.index("--port") + 1])
    die_after = int(os.environ.get("STUB_DIE_AFTER", "0"))
    served = [0]

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass
        def _send(self, code, obj):
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        def do_GET(self):
            self._send(200, {"object": "list", "data": [{"id": name, "object": "model"}]})
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            served[0] += 1
            if die_after and served[0] > die_after:
                os._exit(1)
            with open(os.environ["STUB_ARGV_FILE"] + ".requests", "a") as f:
                f.write(json.dumps({"model": body.get("model"), "effort": body.get("reasoning_effort")}) + "\\n")
            self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": "I am Skippy the Magnificent."}}],
                             "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}})
    HTTPServer(("127.0.0.1", port), H).serve_forever()
''')


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _chat(base_url: str, model: str, text: str, max_tokens: int = 8) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens,
            "temperature": 0}
    request = urllib.request.Request(base_url + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


@pytest.fixture
def stub_vllm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    script = tmp_path / "vllm_stub.py"
    script.write_text(STUB, encoding="utf-8")
    argv_file = tmp_path / "argv.json"
    monkeypatch.setenv("CHARACTER_BAKER_VLLM", f"{sys.executable} {script}")
    monkeypatch.setenv("STUB_ARGV_FILE", str(argv_file))
    return argv_file


def _config_only(folder: Path, model_type: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}), encoding="utf-8")
    return folder


# --- knobs -------------------------------------------------------------------------------------------------------


def test_engine_config_rejects_bad_knobs_naming_the_field() -> None:
    assert EngineConfig.from_table({"name": "vllm", "tensor_parallel_size": 2, "gpu_memory_utilization": 0.6}) == \
        EngineConfig(name="vllm", tensor_parallel_size=2, gpu_memory_utilization=0.6)
    for raw, field in (({"name": "sglang"}, "name"), ({"tensor_parallel_size": 0}, "tensor_parallel_size"),
                       ({"data_parallel_size": "2"}, "data_parallel_size"),
                       ({"max_concurrency": True}, "max_concurrency"),
                       ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
                       ({"max_model_len": 8}, "max_model_len"), ({"max_len": 4096}, "max_len")):
        with pytest.raises(UserError) as e:
            EngineConfig.from_table(raw, "r6.toml: [engine]")
        assert field in str(e.value) and str(e.value).startswith("r6.toml: [engine]") and "\n" not in str(e.value)
    with pytest.raises(UserError, match="engine.max_concurrency"):
        EngineConfig(max_concurrency=0)


def test_vllm_command_line_argument_for_argument(tmp_path: Path) -> None:
    config = EngineConfig(name="vllm", tensor_parallel_size=2, data_parallel_size=1, gpu_memory_utilization=0.55,
                          max_model_len=20480, max_concurrency=64)
    assert vllm_command(["vllm"], "/m/gpt", "r6-base-1234", 8123, config, kind="gpt_oss") == [
        "vllm", "serve", "/m/gpt", "--served-model-name", "r6-base-1234", "--host", "127.0.0.1", "--port", "8123",
        "--tensor-parallel-size", "2", "--data-parallel-size", "1", "--max-num-seqs", "64", "--dtype", "auto",
        "--gpu-memory-utilization", "0.55", "--max-model-len", "20480",
        "--reasoning-parser", "openai_gptoss", "--tool-call-parser", "openai", "--enable-auto-tool-choice"]
    assert vllm_command(["vllm"], "/m/q", "q", 1, EngineConfig(), kind="qwen3", trust_remote_code=True) == [
        "vllm", "serve", "/m/q", "--served-model-name", "q", "--host", "127.0.0.1", "--port", "1",
        "--tensor-parallel-size", "1", "--data-parallel-size", "1", "--max-num-seqs", "16", "--dtype", "auto",
        "--tool-call-parser", "hermes", "--enable-auto-tool-choice", "--trust-remote-code"]


def test_auto_picks_transformers_without_a_gpu_and_keeps_gpt_oss_in_process(tmp_path: Path, stub_vllm: Path) -> None:
    qwen = _config_only(tmp_path / "q", "qwen3")
    gpt = _config_only(tmp_path / "g", "gpt_oss")
    assert choose_engine("auto", qwen) == ("transformers", "no CUDA GPU visible")  # vllm "installed", no GPU
    name, why = choose_engine("auto", gpt)
    assert name == "inprocess" and "harmony" in why
    assert choose_engine("vllm", gpt) == ("vllm", "asked for")
    with pytest.raises(UserError, match="harmony"):
        choose_engine("transformers", gpt)


# --- no silent CPU -----------------------------------------------------------------------------------------------


def _exe(path: Path, body: str) -> Path:
    path.write_text(f"#!{sys.executable}\n{body}", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_a_cuda_less_torch_on_a_gpu_machine_is_a_one_line_error(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _exe(bin_dir / "nvidia-smi", "print('535.104.05')\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    python = _exe(tmp_path / "python", "print('[\"2.14.0+cu130\", \"13.0\", false]')\n")
    problem = cuda_problem(str(python))
    assert problem is not None and "\n" not in problem
    assert "driver 535.104.05" in problem and "CUDA 13.0" in problem and "torch 2.14.0+cu130" in problem
    cpu_build = _exe(tmp_path / "python-cpu", "print('[\"2.13.0+cpu\", null, false]')\n")
    assert "CPU build" in (cuda_problem(str(cpu_build)) or "")
    fine = _exe(tmp_path / "python-ok", "print('[\"2.14.0\", \"13.0\", true]')\n")
    assert cuda_problem(str(fine)) is None
    assert cuda_message("2.14.0", "13.0", True, "580.1") is None


# --- vLLM's lifecycle against the stand-in -----------------------------------------------------------------------


def test_vllm_engine_starts_serves_and_stops_the_stand_in(tmp_path: Path, stub_vllm: Path) -> None:
    model = _config_only(tmp_path / "gpt-oss-tiny", "gpt_oss")
    with serve(model, engine="vllm", served_name="cand-1234", max_concurrency=4, gpu_memory_utilization=0.5,
               max_model_len=4096, log_dir=tmp_path / "logs") as ep:
        argv = json.loads(stub_vllm.read_text())
        port = int(ep.base_url.rsplit(":", 1)[1].split("/")[0])
        assert argv == ["serve", str(model.resolve()), "--served-model-name", "cand-1234", "--host", "127.0.0.1",
                        "--port", str(port), "--tensor-parallel-size", "1", "--data-parallel-size", "1",
                        "--max-num-seqs", "4", "--dtype", "auto", "--gpu-memory-utilization", "0.5",
                        "--max-model-len", "4096", "--reasoning-parser", "openai_gptoss", "--tool-call-parser",
                        "openai", "--enable-auto-tool-choice"]
        assert (ep.engine, ep.reason, ep.model) == ("vllm", "asked for", "cand-1234")
        assert _chat(ep.base_url, ep.model, "hi")["choices"][0]["message"]["content"] == \
            "I am Skippy the Magnificent."
        pid = ep.pid
        assert ep.record()["command"].endswith("--enable-auto-tool-choice")
    assert pid is not None and _gone(pid) and port_free(port)


def test_a_server_that_dies_at_start_is_a_one_line_error_with_its_stderr(tmp_path: Path, stub_vllm: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUB_FAIL", "1")
    with pytest.raises(UserError) as e:
        with serve(_config_only(tmp_path / "m", "qwen3"), engine="vllm"):
            pass
    assert "exited with code 3" in str(e.value) and "stand-in refuses to start" in str(e.value)
    assert "\n" not in str(e.value)


@pytest.fixture(scope="module")
def judge_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One judgment cache for this module's scoring tests: the embedded coherence check trains once, not per test."""
    return tmp_path_factory.mktemp("judge-cache")


def _tiny_model_dir(tmp_path: Path, tiny_qwen3_dir: Path) -> Path:
    """A copy of the tiny model (its own folder: its own candidate id)."""
    import shutil

    target = tmp_path / "served-model"
    shutil.copytree(tiny_qwen3_dir, target)
    return target


def test_scoring_through_the_engine_counts_a_killed_server_as_errors_and_a_rerun_resumes(
        tmp_path: Path, stub_vllm: Path, monkeypatch: pytest.MonkeyPatch, tiny_qwen3_dir: Path,
        judge_cache: Path) -> None:
    from character_baker.tasks.score import ScoreOptions, score_candidate

    monkeypatch.setenv("CHARACTER_BAKER_CACHE", str(judge_cache))

    cand = resolve_candidate(str(_tiny_model_dir(tmp_path, tiny_qwen3_dir)))
    opts = ScoreOptions(tasks=("identity",), limit=4, max_tokens=8, out=tmp_path / "runs", engine="vllm",
                        display="none", sample_retries=0, max_retries=1, max_samples=1, reasoning_effort="low",
                        engine_config=EngineConfig(max_concurrency=1))
    monkeypatch.setenv("STUB_DIE_AFTER", "2")  # the server dies on its third request
    card, _ = score_candidate(cand, opts)
    row = next(r for r in card.metrics if r.metric == "identity")
    assert (row.n, row.errors) == (4, 2)
    assert card.suite["failed_samples"] == {"identity/none": 2}
    engine = card.decoding["engine"]
    assert engine["name"] == "vllm" and engine["reason"] == "asked for" and "--served-model-name" in engine["command"]
    requests = [json.loads(x) for x in Path(str(stub_vllm) + ".requests").read_text().splitlines()]
    assert {r["model"] for r in requests} == {cand.model.split("/", 1)[1]}
    assert {r["effort"] for r in requests} == {"low"}  # the reasoning effort reaches every request

    monkeypatch.delenv("STUB_DIE_AFTER")
    card, _ = score_candidate(cand, opts)  # the rerun asks only for the two that failed
    row = next(r for r in card.metrics if r.metric == "identity")
    assert (row.n, row.errors) == (4, 0)
    assert len(Path(str(stub_vllm) + ".requests").read_text().splitlines()) == 4


# --- the transformers engine, for real ---------------------------------------------------------------------------


def test_transformers_engine_serves_the_tiny_qwen3_on_the_cpu(tmp_path: Path, tiny_qwen3_dir: Path) -> None:
    started = time.monotonic()
    with serve(tiny_qwen3_dir, engine="transformers", served_name="tiny-q3-0001", max_concurrency=2,
               env={"OMP_NUM_THREADS": "1"}) as ep:
        assert (ep.engine, ep.model) == ("transformers", "tiny-q3-0001")
        reply = _chat(ep.base_url, ep.model, "Who are you?", max_tokens=6)
        assert reply["model"] == "tiny-q3-0001"
        assert reply["usage"]["completion_tokens"] <= 6 and reply["usage"]["prompt_tokens"] > 5
        assert reply["choices"][0]["finish_reason"] in ("stop", "length")
        pid, port = ep.pid, int(ep.base_url.rsplit(":", 1)[1].split("/")[0])
        assert "--continuous-batching" in ep.command and "--cb-num-blocks" in ep.command
    assert pid is not None and _gone(pid) and port_free(port)
    assert time.monotonic() - started < 60


def test_a_tiny_candidate_scored_through_the_served_engine_names_it(tmp_path: Path, tiny_qwen3_dir: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    judge_cache: Path) -> None:
    from character_baker.tasks.score import ScoreOptions, score_candidate

    monkeypatch.setenv("CHARACTER_BAKER_CACHE", str(judge_cache))

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cand = resolve_candidate(str(_tiny_model_dir(tmp_path, tiny_qwen3_dir)))
    opts = ScoreOptions(tasks=("identity",), limit=2, max_tokens=6, out=tmp_path / "runs", engine="auto",
                        display="none")
    card, path = score_candidate(cand, opts)
    engine = json.loads(path.read_text())["decoding"]["engine"]
    assert engine["name"] == "transformers" and engine["reason"] == "no CUDA GPU visible"
    assert engine["startup_s"] > 0 and "transformers.cli.transformers serve" in engine["command"]
    row = next(r for r in card.metrics if r.metric == "identity")
    assert (row.n, row.errors) == (2, 0)


def test_a_merged_candidate_carries_the_base_processor_files(tmp_path: Path) -> None:
    """r4/r5 (Qwen3-VL) candidates: a VL processor needs the base's preprocessor_config.json beside the weights."""
    from character_baker.bakers.bake import save_merged
    from character_baker.harness.loading import load_model
    from character_baker.rounds.tiny_models import tiny_qwen3_vl

    base = tiny_qwen3_vl(tmp_path / "vl-base", layers=1)
    (base / "preprocessor_config.json").write_text(json.dumps({"patch_size": 16, "merge_size": 2}), encoding="utf-8")
    loaded = load_model(str(base))
    save_merged(loaded, tmp_path / "candidate")
    assert json.loads((tmp_path / "candidate" / "preprocessor_config.json").read_text()) == \
        {"patch_size": 16, "merge_size": 2}
    assert (tmp_path / "candidate" / "model.safetensors").is_file()


def test_a_judge_on_the_same_card_is_budgeted_before_any_gpu_work(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    from character_baker.rounds import preflight
    from character_baker.rounds.preflight import serving_fits
    from tests.test_rounds import GPT_OSS_20B

    # GPT-OSS-20B's bf16 weights (~42 GB) on an 80 GB card: vLLM's default 0.9 leaves 8 GB, a 16 GB judge does not fit
    problem = serving_fits(80.0, "vllm", None, 16.0, 41.8)
    assert problem and "gpu_memory_utilization <= 0.80" in problem
    assert serving_fits(80.0, "vllm", 0.6, 16.0, 41.8) is None  # r6's share: 48 GB engine + 16 GB judge
    assert "less than its 42 GB of weights" in str(serving_fits(80.0, "auto", 0.5, 0.0, 41.8))
    assert serving_fits(80.0, "inprocess", None, 70.0, 41.8) is None
    assert "do not fit" in str(serving_fits(48.0, "transformers", None, 16.0, 41.8))
    # the same arithmetic runs in the round's preconditions, on the GPU nvidia-smi reports, for r6 on a folder that
    # holds only GPT-OSS-20B's config.json
    base = tmp_path / "gpt-oss-20b"
    base.mkdir()
    (base / "config.json").write_text(json.dumps(GPT_OSS_20B))
    monkeypatch.setenv("R6_BASE", str(base))
    monkeypatch.setattr(preflight, "gpus", lambda: [("H100", 79.2, 79.0)])
    monkeypatch.setattr("character_baker.serving.engine.cuda_problem", lambda: None)
    text = (Path(__file__).resolve().parent.parent / "rounds" / "r6.toml").read_text()
    for judge_gb, refused in ((0, False), (16, False), (40, True)):
        recipe = tmp_path / f"r6-{judge_gb}.toml"
        recipe.write_text(re.sub(r"(?m)^judge_gpu_memory_gb = \d+", f"judge_gpu_memory_gb = {judge_gb}", text))
        found = [p for p in preflight.check(recipe) if f"the judge needs {judge_gb} GB" in p]
        assert bool(found) is refused, (judge_gb, preflight.check(recipe))
