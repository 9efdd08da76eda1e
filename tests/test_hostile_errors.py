"""Hostile file systems and stray paths: a read-only output, a full disk, a board whose store points elsewhere, an id
the store would refuse, GPUs the box does not have. Each is one line naming the file or field, exit 2, found before
the work where it can be, and nothing already written is lost."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from character_baker.cli import main
from character_baker.leaderboard.store import Store
from character_baker.testing.cards import make_card, passing
from character_baker.testing.recipes import skippy_board

from .test_rounds import round_recipe

ROOT = Path(__file__).resolve().parent.parent
TRANSCRIPT = ROOT / "character_baker" / "characters" / "skippy" / "examples" / "skippy_transcript.jsonl"
PR_CAPBSET_DROP, CAP_DAC_OVERRIDE = 24, 1  # <linux/prctl.h>, <linux/capability.h>


@pytest.fixture
def board(tmp_path: Path) -> Path:
    dest = skippy_board(tmp_path / "skippy")
    store = Store(dest / "store.sqlite")
    store.record(make_card("base", passing()))
    store.record(make_card("worse", {**passing(), "personality/sarcastic:classifier": [0] * 20}))
    store.close()
    return dest


def _one_line(err: str, *needles: str) -> str:
    err = err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


def _as_user(fsize: int | None = None) -> Callable[[], None]:
    """What the child runs before exec: as root, without the capability that ignores permission bits (so a mode-0555
    folder refuses it as it refuses anyone), and with `fsize`, the most bytes it may write to one file (SIGXFSZ
    ignored: a write past it fails with EFBIG, as a write to a full disk fails with ENOSPC)."""
    def apply() -> None:
        if os.geteuid() == 0 and ctypes.CDLL(None, use_errno=True).prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0):
            os._exit(77)
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return apply


def _cli(*args: str, fsize: int | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`character-baker ARGS` in its own process, as a user the permission bits apply to."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "-m", "character_baker.cli", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, preexec_fn=_as_user(fsize), timeout=timeout)
    if done.returncode == 77:
        pytest.skip("cannot drop CAP_DAC_OVERRIDE here: a read-only folder cannot be made")
    return done


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A folder (mode 0555) its user cannot create files in; skipped where permission bits bind nobody here."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    probe = subprocess.run([sys.executable, "-c", "import sys; open(sys.argv[1], 'w')", str(folder / "probe")],
                           capture_output=True, text=True, preexec_fn=_as_user())
    if probe.returncode == 77 or probe.returncode == 0:
        folder.chmod(0o755)
        pytest.skip("permission bits do not refuse this user")
    yield folder
    folder.chmod(0o755)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# --- 1. an output folder nobody can write: one line, exit 2, before any work ---------------------------------------


def test_an_unwritable_out_is_one_line_before_any_work(board: Path, read_only: Path) -> None:
    """An output nobody can write is exit 2 and one line naming the path, before any work: not PermissionError's
    traceback, not `regress --junit`'s exit 1 (its "regressed" status), not a score that fails after the whole run."""
    rows = board / "rows.jsonl"
    rows.write_text(json.dumps({"id": "1", "prompt": "Who are you?", "response": "Skippy the Magnificent."}) + "\n")
    cases = [
        (["publish", "--board", str(board), "--out", str(read_only)],
         f"--out {read_only}: cannot create files in {read_only} (Permission denied)"),
        (["publish", "--board", str(board), "--out", str(read_only / "site" / "v2")],
         f"--out {read_only / 'site' / 'v2'}: cannot create files in {read_only} (Permission denied)"),
        (["regress", "--board", str(board), "--baseline", "base", "--candidate", "worse",
          "--junit", str(read_only / "regress.xml")],
         f"--junit {read_only / 'regress.xml'}: cannot create files in {read_only} (Permission denied)"),
        (["score", "--candidate", f"responses:{TRANSCRIPT}", "--tasks", "identity", "--out", str(read_only / "runs")],
         f"--out {read_only / 'runs'}: cannot create files in {read_only} (Permission denied)"),
        (["judge", "--input", str(rows), "--out", str(read_only / "judged.jsonl")],
         f"--out {read_only / 'judged.jsonl'}: cannot create files in {read_only} (Permission denied)"),
    ]
    for args, message in cases:
        done = _cli(*args)
        assert done.returncode == 2, (args, done.stderr[-2000:])
        assert _one_line(done.stderr) == f"character-baker: error: {message}"
    assert list(read_only.iterdir()) == []
    # the same regress with a writable report: the candidate regressed (exit 1), the report says so
    report = board / "regress.xml"
    assert main(["regress", "--board", str(board), "--baseline", "base", "--candidate", "worse",
                 "--junit", str(report)]) == 1
    assert 'failures="1"' in report.read_text() and not list(board.glob(".regress.xml.*"))


def test_a_round_whose_output_cannot_be_written_says_so(tmp_path: Path, read_only: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The dry run lists it with the other preconditions; the round stops at once with one line naming the folder
    (it was PermissionError's traceback from the round's lock)."""
    recipe = round_recipe(tmp_path, tmp_path / "no-such-model")
    text = recipe.read_text()
    recipe.write_text(text.replace(f'output = "{tmp_path / "out"}"', f'output = "{read_only / "out"}"'))
    done = _cli("round", str(recipe))
    assert done.returncode == 2, done.stderr[-2000:]
    assert _one_line(done.stderr) == f"character-baker: error: {read_only / 'out'}: Permission denied (EACCES)"
    # a file where the output folder should be: found by the dry run too, in this process
    (tmp_path / "afile").write_text("not a folder")
    recipe.write_text(text.replace(f'output = "{tmp_path / "out"}"', f'output = "{tmp_path / "afile" / "out"}"'))
    assert main(["round", str(recipe), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert (f"  precondition   output folder {tmp_path / 'afile' / 'out'}: {tmp_path / 'afile'} is a file, not a "
            "folder; set the recipe's output to a folder this user can write") in out


# --- 2. a full disk: one line naming the file, and every file already there kept whole ----------------------------


def test_a_full_disk_while_publishing_keeps_every_file_whole(board: Path, tmp_path: Path) -> None:
    """Writes past RLIMIT_FSIZE fail with EFBIG as writes to a full disk fail with ENOSPC. The published set stays
    the old one, every file (no page beside plots of another publish), the first that did not fit is named, and no
    temporary file is left."""
    site, fresh = tmp_path / "site", tmp_path / "fresh"
    assert main(["publish", "--board", str(board), "--out", str(site)]) == 0
    old = _digests(site)
    Store(board / "store.sqlite").record(make_card("newer", {**passing(), "assistant_leaks/leak": [1] * 20},
                                                   round_="R9", scale=1.0))  # a new round: every page and plot moves
    assert main(["publish", "--board", str(board), "--out", str(fresh)]) == 0  # what this publish writes, in full
    new = _digests(fresh)
    limit = 36_000  # the store's shared-memory file (32 KiB) fits; the largest plot does not
    order = ["README.md", "results.csv", "index.html", *[n for n in new if n.endswith(".png")]]
    too_big = [n for n in order if (fresh / n).stat().st_size > limit]
    assert too_big and old.keys() == new.keys()
    done = _cli("publish", "--board", str(board), "--out", str(site), fsize=limit)
    assert done.returncode == 2, done.stderr[-2000:]
    assert _one_line(done.stderr) == f"character-baker: error: {site / too_big[0]}: File too large (EFBIG)"
    now = _digests(site)
    assert now.keys() == old.keys()  # no .tmp file left behind
    assert now[too_big[0]] == old[too_big[0]] != new[too_big[0]]
    assert now == old and now["README.md"] != new["README.md"]  # README fits the limit: it was not swapped in


def test_a_full_disk_while_recording_names_the_store_and_keeps_its_rows(board: Path, tmp_path: Path) -> None:
    """SQLite's write-ahead log cannot grow past the limit: the record fails in its transaction, which rolls back."""
    card = make_card("big", {**passing(), "personality/sarcastic:classifier": [1, 0] * 4000})
    (tmp_path / "big.json").write_text(json.dumps(card))  # ~130 kB of samples: the log needs more than the limit
    store = board / "store.sqlite"
    limit = 40_000  # the store (24 kB) and its shared-memory index (32 kiB) fit
    assert store.stat().st_size < limit
    done = _cli("record", "--board", str(board), str(tmp_path / "big.json"), fsize=limit)
    assert done.returncode == 2, done.stderr[-2000:]
    err = _one_line(done.stderr)  # the store's own words, or the command line's net: either names the file
    assert err.startswith(f"character-baker: error: {store}: ") and "disk I/O error" in err, err
    db = sqlite3.connect(store)
    assert sorted(c for (c,) in db.execute("SELECT DISTINCT candidate FROM results")) == ["base", "worse"]
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()


def test_a_full_disk_while_creating_a_store_is_the_disk_s_error_not_a_damaged_store(board: Path,
                                                                                   tmp_path: Path) -> None:
    """A store that cannot be created (the disk full from its first page) is SQLite's I/O error naming the store, not
    "not a readable SQLite store ... left untouched", which tells the user to distrust a file that was never there."""
    card = tmp_path / "card.json"
    card.write_text(json.dumps(make_card("fresh", passing())))
    store = tmp_path / "new" / "store.sqlite"
    done = _cli("record", "--board", str(board), "--store", str(store), str(card), fsize=1000)
    assert done.returncode == 2, done.stderr[-2000:]
    err = _one_line(done.stderr)
    assert err == f"character-baker: error: {store}: SQLite error: disk I/O error", err


def test_a_full_disk_while_writing_a_scorecard_names_it_and_keeps_the_old_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """ENOSPC at the scorecard's write names the scorecard (not the temporary file), and the old one stays."""
    import character_baker.harness.data as data
    import character_baker.tasks.score as run
    from character_baker.harness.scorecard import Scorecard

    path = tmp_path / "runs" / "full" / "scorecard.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"old": true}\n')
    card = Scorecard(candidate={"id": "full"}, suite={"name": "skippy", "version": "v"}, judges=[], decoding={},
                     harness={}, metrics=[])

    def fake_score(candidate: object, opts: object) -> tuple[Scorecard, Path]:
        card.write(path)
        return card, path

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(run, "score_candidate", fake_score)
    monkeypatch.setattr(data.os, "fsync", full)
    assert main(["score", "--candidate", f"responses:{TRANSCRIPT}", "--id", "full", "--tasks", "identity",
                 "--out", str(tmp_path / "runs")]) == 2
    assert _one_line(capsys.readouterr().err) == f"character-baker: error: {path}: No space left on device (ENOSPC)"
    assert path.read_text() == '{"old": true}\n' and [p.name for p in path.parent.iterdir()] == ["scorecard.json"]


# --- 4. a board's store stays in its folder -------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["../../elsewhere.sqlite", "ABSOLUTE", "sub/../../x.sqlite", "", ".", ".."])
def test_a_board_store_outside_its_folder_is_refused(board: Path, tmp_path: Path, store: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`store = "../../elsewhere.sqlite"` created (and wrote) a SQLite file outside the board's folder."""
    from character_baker.leaderboard.board import load_board

    store = str(tmp_path / "abs.sqlite") if store == "ABSOLUTE" else store
    toml = board / "board.toml"
    text = toml.read_text()
    assert 'store = "store.sqlite"' in text
    toml.write_text(text.replace('store = "store.sqlite"', f"store = {json.dumps(store)}"))
    before = sorted(p for p in tmp_path.parent.rglob("*.sqlite"))
    assert main(["publish", "--board", str(board), "--out", str(tmp_path / "site")]) == 2
    _one_line(capsys.readouterr().err, f"{toml}: store = {store!r} is not a file inside the board's folder {board}")
    assert sorted(p for p in tmp_path.parent.rglob("*.sqlite")) == before
    toml.write_text(text.replace('store = "store.sqlite"', 'store = "data/../data/store.sqlite"'))
    assert load_board(board).store_path == board / "data" / "store.sqlite"  # a subfolder is still the board's


# --- 5. an id `record` would refuse is refused before the run -------------------------------------------------------


def test_a_derived_id_the_store_refuses_is_refused_before_scoring(board: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """`_draft.jsonl` gives the id `_draft-<hash>`, which the store refuses: it was found after the whole run."""
    import character_baker.tasks.score as run

    def scored(candidate: object, opts: object) -> None:
        raise AssertionError("scored a candidate whose id the store refuses")

    monkeypatch.setattr(run, "score_candidate", scored)
    draft = tmp_path / "_draft.jsonl"
    draft.write_bytes(TRANSCRIPT.read_bytes())
    assert main(["score", "--candidate", f"responses:{draft}", "--tasks", "identity", "--board", str(board),
                 "--out", str(tmp_path / "runs")]) == 2
    err = _one_line(capsys.readouterr().err, f"--candidate responses:{draft}: its derived id '_draft-",
                    "a candidate id may hold", "; name it with --id")
    assert err.startswith("character-baker: error: ")
    assert not (tmp_path / "runs").exists()
    assert sorted(Store(board / "store.sqlite").frame().candidate.unique()) == ["base", "worse"]


# --- 6. device groups name GPUs this box has ------------------------------------------------------------------------


def _grouped(tmp_path: Path, engine: str) -> Path:
    recipe = round_recipe(tmp_path, tmp_path / "no-such-model")
    recipe.write_text(recipe.read_text().replace('name = "inprocess"', engine))
    return recipe


def test_device_groups_naming_gpus_this_box_lacks_fail_preflight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A group "0,1" on a box without a GPU passed preflight; its server would see no GPU hours into the round."""
    from character_baker.rounds import preflight

    card = ("NVIDIA H100 80GB HBM3", 79.6, 79.0)
    monkeypatch.setattr(preflight, "gpus", lambda: [])
    recipe = _grouped(tmp_path, 'name = "transformers"\ndevice_groups = ["0,1"]')
    want = ("[engine] device_groups: group '0,1' names GPU 0, 1, which this machine does not have (nvidia-smi shows "
            'no GPU): run the round on a machine with them, or use "cpu" groups')
    assert want in preflight.check(recipe)
    assert main(["round", str(recipe), "--dry-run"]) == 0
    assert f"  precondition   {want}" in capsys.readouterr().out
    assert main(["round", str(recipe)]) == 2
    err = _one_line(capsys.readouterr().err, "preconditions failed: ", want)
    assert err.startswith("character-baker: error: ")

    def gpu_lines(engine: str, cards: int) -> list[str]:
        monkeypatch.setattr(preflight, "gpus", lambda: [card] * cards)
        return [p for p in preflight.check(_grouped(tmp_path, engine)) if p.startswith("[engine]")]

    assert gpu_lines('name = "transformers"\ndevice_groups = ["cpu", "cpu"]', 0) == []
    assert gpu_lines('name = "transformers"\ndevice_groups = ["0,1"]', 2) == []
    assert gpu_lines('name = "transformers"\ndevice_groups = ["0", "1", "2"]', 2) == [
        "[engine] device_groups: group '2' names GPU 2, which this machine does not have (nvidia-smi shows GPU 0, 1): "
        'name GPUs it shows, or "cpu"']
    assert gpu_lines('name = "transformers"\ndevice_groups = ["0"]\njudge_devices = "1,3"', 2) == [
        "[engine] judge_devices = '1,3' names GPU 3, which this machine does not have (nvidia-smi shows GPU 0, 1): "
        'name GPUs it shows, or "cpu"']
    monkeypatch.setattr(preflight, "gpu_uuids", lambda: ["GPU-6f1c2a57-0000-1111-2222-333344445555"])
    assert gpu_lines('name = "transformers"\ndevice_groups = ["GPU-6f1c2a57", "GPU-0badc0de"]', 1) == [
        "[engine] device_groups: group 'GPU-0badc0de' names GPU GPU-0badc0de, which this machine does not have "
        '(nvidia-smi shows GPU 0): name GPUs it shows, or "cpu"']


# --- 7. merged weights are as readable as any other output ----------------------------------------------------------


def test_merged_weights_get_the_modes_other_outputs_get(tmp_path: Path) -> None:
    """safetensors writes through a private temporary file: merged candidates' model.safetensors came out 0600."""
    from character_baker.bakers.bake import save_merged
    from character_baker.harness.loading import load_model
    from character_baker.rounds.tiny_models import tiny_qwen3

    base = tiny_qwen3(tmp_path / "base", layers=1)
    loaded = load_model(str(base))
    old = os.umask(0o022)
    try:
        save_merged(loaded, tmp_path / "candidate")
    finally:
        os.umask(old)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (tmp_path / "candidate").iterdir()}
    assert "model.safetensors" in modes and set(modes.values()) == {"0o644"}, modes


def test_a_profile_and_its_routes_get_the_modes_other_outputs_get(tmp_path: Path) -> None:
    """The profile (`profile/profile.safetensors`) and the base's routes (`routing/base.safetensors`) go through
    safetensors too: readable by the group and others under a 022 umask, like the candidates beside them."""
    import torch

    from character_baker.bakers.experts import Routes
    from character_baker.bakers.profile import Profile

    profile = Profile([0], *({0: torch.ones(4)} for _ in range(8)))
    routes = Routes([0], torch.ones(2), torch.ones(2, 1, 4), 2, ["a", "b"])
    old = os.umask(0o022)
    try:
        profile.save(tmp_path / "profile")
        routes.save(tmp_path / "routing" / "base.safetensors")
    finally:
        os.umask(old)
    modes = {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777) for p in tmp_path.rglob("*.*")}
    assert set(modes) == {"profile/profile.safetensors", "profile/profile.json", "routing/base.safetensors"}, modes
    assert set(modes.values()) == {"0o644"}, modes


# --- 8. the safety net: the disk's errors are one line, the code's keep their traceback ---------------------------


def test_file_system_and_sqlite_errors_are_one_line_and_bugs_keep_their_traceback(
        board: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import character_baker.cli as cli

    def raising(exc: BaseException) -> Callable[[object], int]:
        def command(args: object) -> int:
            raise exc
        return command

    for exc, line in [
        (PermissionError(errno.EACCES, "Permission denied", "/srv/boards/x.csv"),
         "/srv/boards/x.csv: Permission denied (EACCES)"),
        (OSError(errno.ENOSPC, "No space left on device", "/data/runs/a/scorecard.json"),
         "/data/runs/a/scorecard.json: No space left on device (ENOSPC)"),
        (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/a", None, "/mnt/ro/b"),
         "/mnt/ro/a -> /mnt/ro/b: Read-only file system (EROFS)"),
        (sqlite3.DatabaseError("file is not a database"), "SQLite database: SQLite error: file is not a database"),
    ]:
        monkeypatch.setitem(cli.COMMANDS, "bakers", raising(exc))
        assert main(["bakers"]) == 2
        assert _one_line(capsys.readouterr().err) == f"character-baker: error: {line}"
        with pytest.raises(type(exc)):
            main(["--debug", "bakers"])
    for bug in (TypeError("unsupported operand"), KeyError("metric"), sqlite3.ProgrammingError("closed database"),
                sqlite3.IntegrityError("UNIQUE constraint failed")):
        monkeypatch.setitem(cli.COMMANDS, "bakers", raising(bug))
        with pytest.raises(type(bug)):
            main(["bakers"])

    def broken(self: Store, *args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database disk image is malformed")

    monkeypatch.setattr(Store, "frame", broken)  # the store's own error names the store's file
    assert main(["gate", "--board", str(board), "--candidate", "base"]) == 2
    assert _one_line(capsys.readouterr().err) == (f"character-baker: error: {board / 'store.sqlite'}: SQLite error: "
                                                  "database disk image is malformed")
