"""One serving engine per model: an OpenAI-compatible server for one model, in its own process, for as long as
that model is scored, then stopped (its memory returned) before the next model loads.

    with serve("runs/bake/r6/scale-1.0", engine="auto", served_name="r6-s1-ab12cd34") as ep:
        ...  # Inspect's openai-api provider and lm-eval's local-chat-completions against ep.base_url

Engines (docs/ENGINES.md):
- `vllm`: `vllm serve` (the executable from $CHARACTER_BAKER_VLLM or PATH), with the knobs of `EngineConfig`
  and GPT-OSS's harmony reasoning and tool-call parsers.
- `transformers`: `transformers serve MODEL --continuous-batching` (transformers' own server: FastAPI, paged
  attention, one model process). It names the model by the path it was started with, so the model is started
  as a symlink named after the candidate in a private folder: requests name the candidate, as with vLLM's
  `--served-model-name`.
- `inprocess`: no server; the harness's own batched `generate` (a model mid-training or only in memory).
- `auto`: vllm when a CUDA GPU is visible and vLLM is installed, else transformers.

Standard library only at import time: the round's plan (stdlib-only, before the GPU install) reads the
`[engine]` knobs through `EngineConfig`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..harness.errors import UserError

ENGINES = ("auto", "vllm", "transformers", "inprocess")
VLLM_ENV = "CHARACTER_BAKER_VLLM"  # the `vllm` executable (a path, or a command line such as "python stub.py")
GPT_OSS = "gpt_oss"
# model types whose chat template writes Hermes-style <tool_call> blocks (vLLM's `hermes` tool-call parser)
HERMES_TOOL_MODELS = {"qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "qwen3_vl", "qwen3_vl_moe", "qwen2_5_vl"}
# transformers serve on a CPU sizes its paged KV cache from the machine's RAM and warms it up at 8192 batch
# tokens: ~50 s of start-up for a 64-wide model (measured). These bound it to what the harness sends.
CPU_BATCH_TOKENS = 512
CB_PAGE_TOKENS = 256
CPU = "cpu"  # a device group of no GPU: CUDA_VISIBLE_DEVICES="" and the transformers engine on the CPU
# one GPU as CUDA_VISIBLE_DEVICES names it: its index (as nvidia-smi numbers them) or its GPU-/MIG- UUID
GPU_NAME = re.compile(r"\d+|(?:GPU|MIG)-[0-9A-Za-z/-]+")


@dataclass(frozen=True)
class EngineConfig:
    """The serving knobs (recipe `[engine]`, `score --engine`). None: the engine's own default."""

    name: str = "auto"
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    gpu_memory_utilization: float | None = None  # vLLM's share of the card (its default 0.9 leaves no judge room)
    max_model_len: int | None = None  # prompt + answer, tokens
    max_concurrency: int = 16  # requests in flight: Inspect's connections, lm-eval's, vLLM's --max-num-seqs
    startup_timeout_s: float = 900.0  # a 20B model loads in minutes; a hung start must still end
    # one engine's devices per entry ("0,1,2,3", or "cpu"): a round scores as many models at once as there are
    # groups. Empty: one model at a time on whatever is visible. A tuple (a TOML list becomes one): hashable
    device_groups: tuple[str, ...] = ()
    judge_devices: str = ""  # GPUs a judge model is served on: kept out of every group

    def __post_init__(self) -> None:
        if isinstance(self.device_groups, list):
            object.__setattr__(self, "device_groups", tuple(self.device_groups))
        self.validate("engine")

    def validate(self, where: str) -> None:
        """Each field's type and range; a bad one is a one-line error naming it."""
        if self.name not in ENGINES:
            raise UserError(f"{where}.name = {self.name!r}: use one of {', '.join(ENGINES)}")
        for name in ("tensor_parallel_size", "data_parallel_size", "max_concurrency"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"{where}.{name} = {value!r}: expected an integer >= 1")
        if self.max_model_len is not None and (isinstance(self.max_model_len, bool)
                                               or not isinstance(self.max_model_len, int) or self.max_model_len < 16):
            raise UserError(f"{where}.max_model_len = {self.max_model_len!r}: expected an integer >= 16")
        share = self.gpu_memory_utilization
        if share is not None and (isinstance(share, bool) or not isinstance(share, (int, float))
                                  or not 0 < share <= 1):
            raise UserError(f"{where}.gpu_memory_utilization = {share!r}: expected a number in (0, 1]")
        timeout = self.startup_timeout_s
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise UserError(f"{where}.startup_timeout_s = {timeout!r}: expected a positive number of seconds")
        self._validate_devices(where)

    def _validate_devices(self, where: str) -> None:
        """Groups that do not share a GPU with each other or with the judge, each the size of one vLLM engine."""
        groups = self.device_groups
        if not isinstance(groups, tuple) or not all(isinstance(g, str) for g in groups):
            raise UserError(f"{where}.device_groups = {groups!r}: expected a list of strings such as "
                            '["0,1,2,3", "4,5,6,7"] (or ["cpu"])')
        judge = self.judge_devices
        if not isinstance(judge, str):
            raise UserError(f"{where}.judge_devices = {judge!r}: expected a string such as \"6,7\"")
        owner: dict[str, str] = {}
        for group in groups:
            gpus = device_list(group, f"{where}.device_groups")
            for gpu in gpus:
                if gpu in owner:
                    raise UserError(f"{where}.device_groups: GPU {gpu} is in two groups ({owner[gpu]!r} and "
                                    f"{group!r}); each engine needs GPUs of its own")
                owner[gpu] = group
            if self.name == "vllm" and not gpus:
                raise UserError(f"{where}.device_groups: group {group!r} has no GPU and engine vllm needs one; "
                                'use name = "transformers" (or "auto") for CPU groups')
            size = self.tensor_parallel_size * self.data_parallel_size
            if self.name in ("vllm", "auto") and gpus and len(gpus) != size:
                raise UserError(f"{where}.device_groups: group {group!r} has {len(gpus)} GPU(s), but one vLLM engine "
                                f"uses tensor_parallel_size x data_parallel_size = {size}; make every group {size} "
                                "GPUs or change the parallel sizes")
        if judge:
            if judge == CPU:
                raise UserError(f"{where}.judge_devices = 'cpu': name the judge's GPUs (\"6,7\"), or leave it empty")
            for gpu in device_list(judge, f"{where}.judge_devices"):
                if gpu in owner:
                    raise UserError(f"{where}.judge_devices = {judge!r}: GPU {gpu} is also in device group "
                                    f"{owner[gpu]!r}; the judge's GPUs must stay out of every group")

    @classmethod
    def from_table(cls, raw: Any, where: str = "[engine]") -> EngineConfig:
        """A recipe's `[engine]` table: unknown keys and wrong types are one-line errors."""
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise UserError(f"{where}: expected a table")
        known = [f.name for f in fields(cls)]
        unknown = [k for k in raw if k not in known]
        if unknown:
            raise UserError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(known)})")
        config = cls.__new__(cls)
        for f in fields(cls):
            value = raw.get(f.name, f.default)
            object.__setattr__(config, f.name, tuple(value) if f.name == "device_groups" and isinstance(value, list)
                               else value)
        config.validate(where)
        return config

    def knobs(self) -> dict[str, Any]:
        return asdict(self)


def device_list(group: str, where: str) -> list[str]:
    """A group's GPUs ([] for "cpu"); anything that is not a CUDA_VISIBLE_DEVICES list is a one-line error."""
    if group == CPU:
        return []
    gpus = group.split(",")
    bad = next((g for g in gpus if not GPU_NAME.fullmatch(g)), None)
    if bad is not None:
        raise UserError(f"{where}: {group!r} is not a device group: expected GPU numbers separated by commas, no "
                        'spaces ("0,1,2,3"), or "cpu"')
    if len(set(gpus)) != len(gpus):
        raise UserError(f"{where}: {group!r} names a GPU twice")
    return gpus


def pinned_env(devices: str | None) -> dict[str, str]:
    """What a server pinned to `devices` gets on top of the environment: only that group's GPUs visible, numbered
    as nvidia-smi numbers them (CUDA's own default order puts the fastest first); "cpu": no GPU at all."""
    if devices is None:
        return {}
    device_list(devices, "devices")
    if devices == CPU:
        return {"CUDA_VISIBLE_DEVICES": ""}
    return {"CUDA_VISIBLE_DEVICES": devices, "CUDA_DEVICE_ORDER": os.environ.get("CUDA_DEVICE_ORDER", "PCI_BUS_ID")}


@dataclass
class Endpoint:
    """A running server: where to send requests and under which model name, and how it came to be."""

    base_url: str  # ends in /v1
    model: str  # the model name requests carry
    engine: str
    reason: str  # why this engine (auto's choice, or "asked for")
    startup_s: float
    command: list[str]
    knobs: dict[str, Any] = field(default_factory=dict)
    log: str | None = None  # the server's stdout and stderr
    pid: int | None = None
    devices: str | None = None  # the group it was pinned to (CUDA_VISIBLE_DEVICES, or "cpu"); None: all visible

    def record(self) -> dict[str, Any]:
        """What a scorecard keeps about the engine that generated its replies (and where it ran)."""
        return {"name": self.engine, "reason": self.reason, "knobs": self.knobs,
                "startup_s": round(self.startup_s, 2), "command": shlex.join(self.command), "devices": self.devices}


# --- choosing --------------------------------------------------------------------------------------------------


def vllm_command_prefix() -> list[str] | None:
    """The `vllm` executable: $CHARACTER_BAKER_VLLM (a path or a command line), else `vllm` on PATH."""
    configured = os.environ.get(VLLM_ENV)
    if configured:
        return shlex.split(configured)
    found = shutil.which("vllm")
    return [found] if found else None


def cuda_visible() -> bool:
    """Whether torch sees a CUDA GPU (False when torch is absent: the plan runs before the install)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def model_type(model_path: str | Path) -> str:
    """config.json's model_type ("" when it cannot be read)."""
    try:
        config = json.loads((Path(model_path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(config.get("model_type", "")) if isinstance(config, dict) else ""


def choose_engine(name: str, model_path: str | Path | None = None, devices: str | None = None) -> tuple[str, str]:
    """(engine, why). `auto`: vLLM where it can run (a CUDA GPU and the executable), else transformers' server;
    GPT-OSS without vLLM stays in process (transformers serve 5.25 has no harmony parser, see `_transformers_ok`).
    `devices` = "cpu" (a CPU device group) counts as no GPU."""
    if name not in ENGINES:
        raise UserError(f"engine {name!r}: use one of {', '.join(ENGINES)}")
    kind = model_type(model_path) if model_path is not None else ""
    if name != "auto":
        if name == "transformers" and kind == GPT_OSS:
            raise UserError(_HARMONY_UNSUPPORTED)
        return name, "asked for"
    gpu = devices != CPU and cuda_visible()
    vllm = vllm_command_prefix()
    if gpu and vllm:
        return "vllm", f"a CUDA GPU is visible and vllm is installed ({shlex.join(vllm)})"
    why = ("device group cpu" if devices == CPU else "no CUDA GPU visible" if not gpu
           else f"vllm not installed (no ${VLLM_ENV}, no vllm on PATH)")
    if kind == GPT_OSS:
        return "inprocess", f"{why}; GPT-OSS replies need their harmony channels, which transformers serve drops"
    return "transformers", why


_HARMONY_UNSUPPORTED = ("engine transformers: GPT-OSS replies come back from transformers serve (5.25) with their "
                        "harmony channel markers stripped and no parser to split analysis from final; use "
                        "--engine vllm on a GPU or --engine inprocess")


# --- command lines ---------------------------------------------------------------------------------------------


def vllm_command(prefix: list[str], model_path: str, served_name: str, port: int, config: EngineConfig, *,
                 kind: str = "", trust_remote_code: bool = False, dtype: str = "auto") -> list[str]:
    """`vllm serve` for one model under the candidate's name, with the recipe's knobs."""
    cmd = [*prefix, "serve", model_path, "--served-model-name", served_name, "--host", "127.0.0.1",
           "--port", str(port), "--tensor-parallel-size", str(config.tensor_parallel_size),
           "--data-parallel-size", str(config.data_parallel_size), "--max-num-seqs", str(config.max_concurrency),
           "--dtype", dtype]
    if config.gpu_memory_utilization is not None:
        cmd += ["--gpu-memory-utilization", f"{config.gpu_memory_utilization:g}"]
    if config.max_model_len is not None:
        cmd += ["--max-model-len", str(config.max_model_len)]
    if kind == GPT_OSS:  # analysis channel -> reasoning_content, final channel -> content; harmony tool calls
        cmd += ["--reasoning-parser", "openai_gptoss", "--tool-call-parser", "openai", "--enable-auto-tool-choice"]
    elif kind in HERMES_TOOL_MODELS:
        cmd += ["--tool-call-parser", "hermes", "--enable-auto-tool-choice"]
    if trust_remote_code:
        cmd.append("--trust-remote-code")
    return cmd


def transformers_command(served_name: str, port: int, config: EngineConfig, *, device: str,
                         chat_template_kwargs: dict[str, Any] | None = None, trust_remote_code: bool = False,
                         dtype: str = "auto") -> list[str]:
    """`transformers serve` with continuous batching, pinned to one model (named as requests name it)."""
    cmd = [sys.executable, "-m", "transformers.cli.transformers", "serve", served_name, "--continuous-batching",
           "--device", device, "--dtype", dtype, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    if config.max_model_len is not None:
        cmd += ["--max-model-len", str(config.max_model_len)]
    if device == "cpu":  # bound the paged cache to the requests in flight (see CPU_BATCH_TOKENS)
        length = config.max_model_len or 4096
        blocks = max(64, math.ceil(config.max_concurrency * length / CB_PAGE_TOKENS))
        cmd += ["--cb-max-batch-tokens", str(CPU_BATCH_TOKENS), "--cb-num-blocks", str(blocks)]
    elif config.gpu_memory_utilization is not None:
        cmd += ["--cb-max-memory-percent", f"{config.gpu_memory_utilization:g}"]
    if chat_template_kwargs:  # e.g. GPT-OSS's reasoning effort: the server ignores the request field
        cmd += ["--chat-template-kwargs", json.dumps(chat_template_kwargs, sort_keys=True)]
    if trust_remote_code:
        cmd.append("--trust-remote-code")
    return cmd


# --- the lifecycle ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    """Nothing listens on the port (connections the server closed may linger in TIME_WAIT: they hold nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _tail(log: Path, lines: int = 3) -> str:
    """The last lines of a server's log, as one line (for a one-line error)."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    kept = [ln.strip() for ln in text.splitlines() if ln.strip() and "it/s]" not in ln][-lines:]
    return " | ".join(kept)[-400:] or "(empty log)"


def _models(base_url: str, timeout: float = 2.0) -> list[str] | None:
    """The model names /v1/models lists, or None while the server does not answer."""
    try:
        with urllib.request.urlopen(base_url + "/models", timeout=timeout) as response:
            data = json.loads(response.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return [str(m.get("id")) for m in data.get("data") or [] if isinstance(m, dict)]


def answers(endpoint: Endpoint) -> bool:
    """The server still lists its model."""
    listed = _models(endpoint.base_url)
    return listed is not None and endpoint.model in listed


def stop(process: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    """SIGTERM to the server's whole process group (its model and API processes too), SIGKILL after `grace_s`."""
    if process.poll() is not None:
        _kill_group(process.pid, signal.SIGKILL)  # children it left behind
        return
    _kill_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        _kill_group(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    _kill_group(process.pid, signal.SIGKILL)  # anything of the group still there


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@contextlib.contextmanager
def serve(model_path: str | Path, *, engine: str = "auto", config: EngineConfig | None = None,
          served_name: str | None = None, chat_template_kwargs: dict[str, Any] | None = None,
          trust_remote_code: bool = False, dtype: str = "auto", log_dir: str | Path | None = None,
          env: dict[str, str] | None = None, grace_s: float = 20.0, quiet: bool = False,
          devices: str | None = None, **knobs: Any) -> Iterator[Endpoint]:
    """Serve one model until the block ends: start, wait until /v1/models lists it, yield its `Endpoint`, stop.

    `knobs` override `config`'s fields (`serve(path, max_concurrency=4)`). `devices` pins the server to one device
    group (`pinned_env`: "0,1" or "cpu"; None: whatever is visible). A server that exits or never answers is a
    one-line UserError with the end of its log; on exit nothing of it remains and its port is free."""
    base = config or EngineConfig()
    config = EngineConfig(**{**base.knobs(), **knobs, "name": engine if engine != "auto" else base.name})
    path = Path(model_path).expanduser().resolve()
    if not (path / "config.json").is_file():
        raise UserError(f"{model_path}: not a model folder (no config.json); an engine serves a saved checkpoint")
    pin = pinned_env(devices)
    chosen, reason = choose_engine(config.name, path, devices)
    if chosen == "inprocess":
        raise UserError(f"{model_path}: engine inprocess has no server ({reason}); score it in process")
    if chosen == "vllm" and devices == CPU:
        raise UserError(f"{model_path}: engine vllm cannot run on device group cpu; use the transformers engine")
    name = served_name or path.name
    if not quiet:
        print(f"engine: {chosen} ({reason})", file=sys.stderr, flush=True)
    port = free_port()
    private = Path(tempfile.mkdtemp(prefix="cb-engine-"))
    logs = Path(log_dir) if log_dir else private
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"engine-{chosen}-{port}.log"
    kind = model_type(path)
    if chosen == "vllm":
        prefix = vllm_command_prefix()
        if not prefix:
            raise UserError(f"engine vllm: no vllm executable (set ${VLLM_ENV} or install vllm: pip install "
                            "'character-baker[gpu]')")
        cmd = vllm_command(prefix, str(path), name, port, config, kind=kind,
                           trust_remote_code=trust_remote_code, dtype=dtype)
        cwd = None
    else:
        if kind == GPT_OSS:
            raise UserError(_HARMONY_UNSUPPORTED)
        (private / name).symlink_to(path, target_is_directory=True)  # requests name the candidate, not a path
        device = "cpu" if devices == CPU or not cuda_visible() else "cuda"  # a group's first GPU, as it sees them
        cmd = transformers_command(name, port, config, device=device,
                                   chat_template_kwargs=chat_template_kwargs, trust_remote_code=trust_remote_code,
                                   dtype=dtype)
        cwd = str(private)
    base_url = f"http://127.0.0.1:{port}/v1"
    started = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
                                   env={**os.environ, **pin, **(env or {})}, start_new_session=True)
    try:
        while True:
            if process.poll() is not None:
                raise UserError(f"engine {chosen} for {path.name} exited with code {process.returncode} while "
                                f"starting: {_tail(log)} (log: {log})")
            listed = _models(base_url)
            if listed is not None and name in listed:
                break
            if time.monotonic() - started > config.startup_timeout_s:
                raise UserError(f"engine {chosen} for {path.name} did not answer within {config.startup_timeout_s:g} s "
                                f"(raise [engine] startup_timeout_s): {_tail(log)} (log: {log})")
            time.sleep(0.25)
        endpoint = Endpoint(base_url=base_url, model=name, engine=chosen, reason=reason,
                            startup_s=time.monotonic() - started, command=cmd, knobs=config.knobs(), log=str(log),
                            pid=process.pid, devices=devices)
        if not quiet:
            on = f" on devices {devices}" if devices is not None else ""
            print(f"engine: {chosen} serving {name} at {base_url}{on} (started in {endpoint.startup_s:.1f} s)",
                  file=sys.stderr, flush=True)
        yield endpoint
    finally:
        stop(process, grace_s)
        deadline = time.monotonic() + 10
        while not port_free(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        if log_dir is None and log.exists():
            with contextlib.suppress(OSError):
                log.unlink()
        shutil.rmtree(private, ignore_errors=True)


# --- no silent CPU ---------------------------------------------------------------------------------------------


def cuda_problem(python: str | None = None, timeout: float = 120.0) -> str | None:
    """Why the installed torch would run a GPU round on the CPU (None: it sees CUDA, or no GPU is visible).

    Asked of a child interpreter, so the caller (the stdlib-only preflight) imports no torch itself."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None  # no NVIDIA GPU on this machine: the round's own GPU precondition says so
    try:
        driver = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                                text=True, timeout=30).stdout.strip().splitlines()
    except (subprocess.SubprocessError, OSError):
        driver = []
    probe = ("import json, torch; print(json.dumps([torch.__version__, torch.version.cuda, "
             "torch.cuda.is_available()]))")
    try:
        done = subprocess.run([python or sys.executable, "-c", probe], capture_output=True, text=True,
                              timeout=timeout)
    except (subprocess.SubprocessError, OSError) as e:
        return f"cannot ask torch whether it sees the GPU ({e})"
    if done.returncode != 0:
        if "No module named 'torch'" in done.stderr:
            return None  # before the GPU install: checked again after it
        return f"torch fails to import: {_last_line(done.stderr)}"
    version, cuda, available = json.loads(done.stdout.strip().splitlines()[-1])
    return cuda_message(version, cuda, bool(available), driver[0] if driver else None)


def cuda_message(torch_version: str, torch_cuda: str | None, available: bool, driver: str | None) -> str | None:
    """The one line for a torch that cannot use the visible GPU (None when it can)."""
    if available:
        return None
    drv = f"driver {driver}" if driver else "an NVIDIA driver nvidia-smi could not report"
    if torch_cuda is None:
        return (f"torch {torch_version} is a CPU build but this machine has a GPU ({drv}): the round would train on "
                "the CPU; install a CUDA build of torch (pip install -c constraints/gpu.txt 'character-baker[gpu]')")
    return (f"torch {torch_version} is built for CUDA {torch_cuda} but cannot use the GPU ({drv}, which must support "
            f"CUDA {torch_cuda}): update the driver, or install a torch wheel built for the CUDA the driver supports "
            "(nvidia-smi shows it), e.g. pip install torch --index-url https://download.pytorch.org/whl/cu126")


def require_cuda(python: str | None = None) -> None:
    """No silent CPU: a GPU round stops here, before any baking, when torch cannot use the GPU."""
    problem = cuda_problem(python)
    if problem:
        raise UserError(problem)
    if shutil.which("nvidia-smi") is None:
        raise UserError("no NVIDIA GPU visible (nvidia-smi not found): this round needs one; run it on a GPU machine")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "(no output)"
