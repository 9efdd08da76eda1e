"""Several models at once (`[engine] device_groups`): the knobs' checks, the environment a pinned server really
gets, and two tiny candidates scored at once on two CPU groups, each in its own process and on its own
transformers server, giving the scorecards and store rows that scoring them one at a time gives."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from character_baker.harness.candidates import resolve_candidate
from character_baker.harness.errors import UserError
from character_baker.serving.engine import EngineConfig, pinned_env, serve

ROOT = Path(__file__).resolve().parent.parent

# --- the knobs ---------------------------------------------------------------------------------------------------


def test_device_groups_are_checked_with_one_line_errors_naming_the_field() -> None:
    eight = {"name": "vllm", "tensor_parallel_size": 2, "data_parallel_size": 2,
             "device_groups": ["0,1,2,3", "4,5,6,7"]}
    config = EngineConfig.from_table(eight, "r7.toml: [engine]")
    assert config == EngineConfig(**eight) and config.device_groups == ("0,1,2,3", "4,5,6,7")
    assert hash(config) == hash(EngineConfig(**eight))  # frozen and hashable: the groups are a tuple
    assert EngineConfig.from_table({"device_groups": ["0,1", "2,3"], "judge_devices": "4,5", "name": "transformers"})
    assert EngineConfig.from_table({"device_groups": ["cpu", "cpu"]}).device_groups == ("cpu", "cpu")
    assert EngineConfig().device_groups == () and EngineConfig().judge_devices == ""
    bad = [
        ({"name": "transformers", "device_groups": ["0,1", "1,2"]}, "device_groups", "GPU 1 is in two groups"),
        ({"device_groups": ["0", "1"], "judge_devices": "1,2"}, "judge_devices", "also in device group '1'"),
        ({"name": "vllm", "tensor_parallel_size": 2, "device_groups": ["0,1,2,3"]}, "device_groups",
         "tensor_parallel_size x data_parallel_size = 2"),
        ({"tensor_parallel_size": 4, "device_groups": ["0,1"]}, "device_groups", "= 4"),  # auto: vLLM on a GPU
        ({"name": "vllm", "device_groups": ["cpu"]}, "device_groups", "no GPU"),
        ({"device_groups": ["0, 1"]}, "device_groups", "not a device group"),
        ({"device_groups": ["gpu0"]}, "device_groups", "not a device group"),
        ({"device_groups": [""]}, "device_groups", "not a device group"),
        ({"device_groups": ["0,0"]}, "device_groups", "twice"),
        ({"device_groups": "0,1"}, "device_groups", "expected a list"),
        ({"device_groups": [0, 1]}, "device_groups", "expected a list"),
        ({"judge_devices": 7}, "judge_devices", "expected a string"),
        ({"judge_devices": "cpu"}, "judge_devices", "name the judge's GPUs"),
    ]
    for raw, field, why in bad:
        with pytest.raises(UserError) as e:
            EngineConfig.from_table(raw, "r7.toml: [engine]")
        message = str(e.value)
        assert message.startswith(f"r7.toml: [engine].{field}") and why in message, (raw, message)
        assert "\n" not in message
    with pytest.raises(UserError, match=r"engine\.device_groups: GPU 3 is in two groups"):
        EngineConfig(name="transformers", device_groups=["2,3", "3"])


# --- the environment a pinned server gets -------------------------------------------------------------------------

# A stand-in for `vllm`: writes its argv and the device variables it was started with, then serves /v1/models.
STUB = textwrap.dedent('''
    import json, os, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer
    argv = sys.argv[1:]
    seen = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")}
    with open(os.environ["STUB_OUT"], "w") as f:
        json.dump({"argv": argv, "env": seen}, f)
    name = argv[argv.index("--served-model-name") + 1]

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass
        def do_GET(self):
            data = json.dumps({"object": "list", "data": [{"id": name, "object": "model"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
    HTTPServer(("127.0.0.1", int(argv[argv.index("--port") + 1])), H).serve_forever()
''')


def test_a_pinned_server_sees_only_its_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert pinned_env(None) == {}
    assert pinned_env("cpu") == {"CUDA_VISIBLE_DEVICES": ""}
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    assert pinned_env("4,5") == {"CUDA_VISIBLE_DEVICES": "4,5", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    with pytest.raises(UserError, match="not a device group"):
        pinned_env("4;5")
    script = tmp_path / "vllm_stub.py"
    script.write_text(STUB, encoding="utf-8")
    monkeypatch.setenv("CHARACTER_BAKER_VLLM", f"{sys.executable} {script}")
    monkeypatch.setenv("STUB_OUT", str(tmp_path / "seen.json"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3,4,5,6,7")  # the round's own view: replaced, not narrowed
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "qwen3"}), encoding="utf-8")
    config = EngineConfig(name="vllm", tensor_parallel_size=2, device_groups=("4,5", "6,7"))
    with serve(model, engine="vllm", config=config, served_name="cand-1", devices="6,7", quiet=True) as ep:
        seen = json.loads((tmp_path / "seen.json").read_text())
        record = ep.record()
    assert seen["env"] == {"CUDA_VISIBLE_DEVICES": "6,7", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert seen["argv"][seen["argv"].index("--tensor-parallel-size") + 1] == "2"
    assert record["devices"] == "6,7" and record["knobs"]["device_groups"] == ("4,5", "6,7")
    with serve(model, engine="vllm", served_name="cand-2", quiet=True) as ep:  # not pinned: the environment as is
        seen = json.loads((tmp_path / "seen.json").read_text())
        assert ep.record()["devices"] is None
    assert seen["env"]["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7"
    with pytest.raises(UserError, match="engine vllm cannot run on device group cpu"):
        with serve(model, engine="vllm", devices="cpu", quiet=True):
            pass


# --- two candidates at once, for real ------------------------------------------------------------------------------


def _judgeless_pack(folder: Path) -> Path:
    """The toy pack without the embedded judges (their first training costs minutes): identity's rule alone."""
    pack = folder / "pack"
    shutil.copytree(ROOT / "character_baker" / "characters" / "toy", pack)
    toml = pack / "character.toml"
    lines = [ln for ln in toml.read_text().splitlines()
             if not ln.startswith(("judge =", "judge_leaks =", "calibration =", "calibration_leaks ="))]
    toml.write_text("\n".join(lines) + "\n")
    return pack


def _talkative(source: Path, out: Path, seed: int) -> Path:
    """The tiny model with its matrices redrawn at a larger scale (seeded): at its own init it answers only
    newlines, which strip to "", and every model's replies would compare equal. These say something, each its own."""
    import torch
    from transformers import AutoModelForCausalLM

    shutil.copytree(source, out)
    model = AutoModelForCausalLM.from_pretrained(out)
    draw = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=draw) * 0.3)
    model.save_pretrained(out)
    return out


class ServerWatch:
    """Which transformers servers are alive, read from /proc every 50 ms: when each named model's server was
    first and last seen, and the CUDA_VISIBLE_DEVICES it runs under. Measured on the processes themselves."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.seen: dict[str, list[float]] = {}
        self.env: dict[str, str | None] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ServerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                try:
                    argv = (proc / "cmdline").read_bytes().split(b"\0")
                    environ = (proc / "environ").read_bytes().split(b"\0")
                except OSError:
                    continue
                args = [a.decode(errors="replace") for a in argv]
                if "transformers.cli.transformers" not in args or "serve" not in args:
                    continue
                name = args[args.index("serve") + 1]
                if name in self.names:
                    self.seen.setdefault(name, [now, now])[1] = now
                    cuda = [e.decode() for e in environ if e.startswith(b"CUDA_VISIBLE_DEVICES=")]
                    self.env[name] = cuda[0].split("=", 1)[1] if cuda else None
            self._stop.wait(0.05)


@pytest.mark.timeout(600)
def test_two_candidates_score_at_once_on_two_groups_as_they_score_one_at_a_time(
        tmp_path: Path, tiny_qwen3_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from character_baker.leaderboard.store import Store
    from character_baker.rounds.round import score_models
    from character_baker.tasks.score import ScoreOptions

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the servers and the scoring processes: one thread each
    cands = [resolve_candidate(str(_talkative(tiny_qwen3_dir, tmp_path / f"cand-{i}", seed=i))) for i in (0, 1)]
    served = [c.model.split("/", 1)[1] for c in cands]
    groups = ("cpu", "cpu")
    opts = ScoreOptions(character=str(_judgeless_pack(tmp_path)), tasks=("identity",), limit=2, max_tokens=8,
                        engine="transformers", display="none",
                        engine_config=EngineConfig(name="transformers", max_concurrency=2, device_groups=groups))

    def run(label: str, on: tuple[str, ...]) -> tuple[dict[str, dict], Store, list[str], ServerWatch, float]:
        # each run its own Inspect cache and output: the second must generate, not read the first one's replies
        monkeypatch.setenv("INSPECT_CACHE_DIR", str(tmp_path / f"inspect-{label}"))
        store, cards, notes = Store(tmp_path / f"{label}.sqlite"), {}, []

        def done(cand, got) -> None:  # noqa: ANN001 - the scheduler's callback
            assert threading.current_thread() is threading.main_thread()  # SQLite stays in its own thread
            cards[cand.id] = got[0]
            store.record(got[0].to_json())

        started = time.monotonic()
        with ServerWatch(served) as watch:
            score_models(cands, lambda _: [replace(opts, out=tmp_path / label)], on, notes.append, done)
        return cards, store, notes, watch, time.monotonic() - started

    one, one_store, _, one_watch, one_s = run("one-at-a-time", ())
    both, both_store, notes, watch, both_s = run("at-once", groups)

    # the two servers were alive at the same time, each under no GPU; one at a time, they never were
    (a0, a1), (b0, b1) = watch.seen[served[0]], watch.seen[served[1]]
    assert max(a0, b0) < min(a1, b1), watch.seen
    assert watch.env == {served[0]: "", served[1]: ""}
    (a0, a1), (b0, b1) = one_watch.seen[served[0]], one_watch.seen[served[1]]
    assert a1 < b0, one_watch.seen
    assert sorted(notes[:2]) == sorted(f"{c.id}: started on devices cpu" for c in cands)
    assert sorted(n.split(":")[0] for n in notes[2:]) == sorted(c.id for c in cands)
    assert all(": finished on devices cpu: " in n for n in notes[2:])

    # the same figures, per prompt and per metric, and the same replies
    for cand in cands:
        a, b = one[cand.id], both[cand.id]
        assert [asdict(r) for r in a.metrics] == [asdict(r) for r in b.metrics] and a.metrics
        assert a.samples == b.samples and a.examples == b.examples and a.suite == b.suite
        assert b.decoding["engine"]["devices"] == "cpu" and "--device cpu" in b.decoding["engine"]["command"]
        assert a.decoding["engine"]["devices"] is None
    replies = [list(both[c.id].examples["identity/none"].values()) for c in cands]
    assert all(replies[0]) and all(replies[1]) and replies[0] != replies[1]  # each server answered its own model
    # and the same rows in the store, in the same order
    keep = [c for c in one_store.frame().columns if c != "created"]
    assert one_store.frame()[keep].equals(both_store.frame()[keep])
    for rid in one_store.frame().result_id.unique():
        a_row, b_row = one_store.result(int(rid)), both_store.result(int(rid))
        assert (a_row["samples"], a_row["examples"]) == (b_row["samples"], b_row["examples"])
    print(f"one at a time {one_s:.0f} s, at once {both_s:.0f} s")


# --- the scheduler -------------------------------------------------------------------------------------------------


def test_each_job_holds_a_group_of_its_own_and_is_recorded_in_order() -> None:
    from character_baker.rounds.round import score_on_groups

    lock, holding, most, order = threading.Lock(), {}, [0], []

    def score_one(job: int, group: str) -> str:
        with lock:
            assert group not in holding.values(), (job, group, holding)  # no two jobs on one group
            holding[job] = group
            most[0] = max(most[0], len(holding))
        time.sleep(0.05 * (5 - job))  # later jobs finish first
        with lock:
            del holding[job]
        return f"{job}@{group}"

    def done(job: int, result: str) -> None:
        assert threading.current_thread() is threading.main_thread()
        order.append(job)

    score_on_groups(list(range(5)), ["0,1", "2,3"], score_one, done)
    assert order == [0, 1, 2, 3, 4] and most[0] == 2


def test_a_failed_model_is_one_line_after_the_others_are_recorded(tmp_path: Path) -> None:
    """A model that fails in its process comes back as its own error, once the others are done and recorded."""
    from character_baker.rounds.round import score_models
    from character_baker.tasks.score import ScoreOptions

    replies = tmp_path / "replies.jsonl"
    replies.write_text("".join(json.dumps({"id": f"eval-id-{i}", "response": "I am Skippy the Magnificent."}) + "\n"
                               for i in range(2)))
    good, bad = (resolve_candidate(f"responses:{replies}", candidate_id=cid) for cid in ("good", "bad"))
    opts = ScoreOptions(character=str(_judgeless_pack(tmp_path)), tasks=("identity",), limit=2, display="none",
                        out=tmp_path / "runs")
    recorded: list[str] = []
    with pytest.raises(UserError) as e:
        score_models([bad, good], lambda c: [replace(opts, tasks=("nope",)) if c is bad else opts], ("cpu", "cpu"),
                     lambda _: None, lambda c, cards: recorded.append(f"{c.id}: {cards[0].metrics[-1].value}"))
    assert "--tasks: 'nope'" in str(e.value) and "\n" not in str(e.value)
    assert recorded == ["good: 1.0"]  # identity of the good one, scored and handed back though the bad one failed
