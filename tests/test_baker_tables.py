"""A baker's own recipe table: declared by the baker's package (entry-point group `character_baker.recipe_tables`),
filled and checked when the recipe is read, so the dry run refuses what the bake would. The built-in tables and one
from a plug-in package installed beside the project (a real dist-info folder on the path, read by importlib)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from character_baker.bakers.lora.settings import GRPOSettings
from character_baker.bakers.plain.settings import RouterSettings, SteerSettings
from character_baker.bakers.recipe import load_recipe
from character_baker.cli import main

from .test_rounds import round_recipe

ROOT = Path(__file__).resolve().parent.parent

PLUGIN = '''
from dataclasses import dataclass, field

from character_baker.bakers.recipe import BakerSettings
from character_baker.harness.errors import UserError


@dataclass
class EchoSettings(BakerSettings):
    copies: int = 1
    words: list[str] = field(default_factory=lambda: ["hello"])

    def check(self, recipe, where):
        if self.copies < 1:
            raise UserError(f"{where} copies = {self.copies}: must be at least 1")


class EchoBaker:
    name = "echo"
    description = "writes nothing"

    def bake(self, recipe, progress=True, steps=None):
        return []
'''
ENTRY_POINTS = """[character_baker.bakers]
echo = echo_plugin:EchoBaker

[character_baker.recipe_tables]
echo = {table}
"""


def _recipe(tmp_path: Path, baker: str, extra: str) -> Path:
    recipe = round_recipe(tmp_path, tmp_path / "no-such-model")
    recipe.write_text(recipe.read_text().replace('baker = "pushpull"', f'baker = "{baker}"') + "\n" + extra + "\n")
    return recipe


def test_the_built_in_tables_are_filled_from_the_recipe(tmp_path: Path) -> None:
    recipe = load_recipe(_recipe(tmp_path, "grpo", "[grpo]\ngenerations = 4\ntemperature = 0.7\n"
                                 "[router]\nstrengths = [1.5]\ncombine = true\n[steer]\nlayers = [1, 2]"))
    assert GRPOSettings.of(recipe) == GRPOSettings(generations=4, max_completion_length=64, temperature=0.7)
    assert RouterSettings.of(recipe) == RouterSettings(strengths=[1.5], combine=True)
    assert SteerSettings.of(recipe).layers == [1, 2]
    plain = load_recipe(_recipe(tmp_path / "plain", "pushpull", ""))
    assert RouterSettings.of(plain) == RouterSettings()  # defaults where the recipe has no such table


@pytest.mark.parametrize("extra, message", [
    ("[grpo]\ngenerations = 3", "[grpo] generations = 3: GRPO compares at least 2 samples per prompt, and [train] "
                                "batch_size x grad_accum (8) must be a multiple of it"),
    ("[grpo]\ngenerations = 1", "[grpo] generations = 1: GRPO compares at least 2 samples per prompt"),
    ("[grpo]\ntemperature = 0.0", "[grpo] temperature = 0.0: must be above 0"),
    ("[grpo]\nmax_completion_length = 0", "[grpo] max_completion_length = 0: must be at least 1"),
])
def test_grpo_settings_no_run_could_use_fail_the_dry_run(tmp_path: Path, extra: str, message: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    recipe = _recipe(tmp_path, "grpo", extra)
    assert main(["round", str(recipe), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"character-baker: error: {recipe}: {message}") and "\n" not in err, err


def _with_plugin(tmp_path: Path, table: str, extra: str) -> subprocess.CompletedProcess[str]:
    """Load a recipe for the plug-in's `echo` baker in a child whose path holds the plug-in's package."""
    site = tmp_path / "site"
    (site / "echo_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "echo_plugin.py").write_text(PLUGIN)
    (site / "echo_plugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-plugin\n"
                                                                  "Version: 0.1\n")
    (site / "echo_plugin-0.1.dist-info" / "entry_points.txt").write_text(ENTRY_POINTS.format(table=table))
    recipe = _recipe(tmp_path, "echo", extra)
    code = ("import sys; from character_baker.bakers.recipe import load_recipe; from character_baker.cli import main; "
            "from echo_plugin import EchoSettings; code = main(['round', sys.argv[1], '--dry-run']); "
            "code or print('settings', EchoSettings.of(load_recipe(sys.argv[1]))); sys.exit(code)")
    return subprocess.run([sys.executable, "-c", code, str(recipe)], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{ROOT}", "HF_HUB_OFFLINE": "1"})


def test_a_plugin_baker_declares_its_own_table(tmp_path: Path) -> None:
    done = _with_plugin(tmp_path, "echo_plugin:EchoSettings", '[echo]\ncopies = 3\nwords = ["a", "b"]')
    assert done.returncode == 0, done.stderr
    assert "settings EchoSettings(copies=3, words=['a', 'b'])" in done.stdout
    # the plan describes what it knows: a plug-in's training is its own
    assert ("  baker          echo: a plug-in baker (echo_plugin:EchoBaker): what it trains is its own, the plan "
            "cannot say\n") in done.stdout
    assert "  candidates     as many as the plug-in writes (planned as one per merge scale) -> 2 candidates" \
        in done.stdout


@pytest.mark.parametrize("table, extra, message", [
    ("echo_plugin:EchoSettings", "[echo]\ncopis = 3", "[echo]: unknown key 'copis' (did you mean 'copies'?)"),
    ("echo_plugin:EchoSettings", "[echo]\ncopies = 0", "[echo] copies = 0: must be at least 1"),
    ("echo_plugin:EchoSettings", '[echo]\ncopies = "3"', "[echo].copies: expected int, got str"),
    ("echo_plugin:EchoSettings", '[echo]\nwords = [1, 2]', "[echo].words: expected a list of str"),
    ("echo_plugin:EchoSettings", "[echoo]\ncopies = 3", "unknown key 'echoo' (did you mean 'echo'?)"),
    ("echo_plugin:Missing", "[echo]\ncopies = 3", "recipe table [echo] = 'echo_plugin:Missing' (entry-point group "
                                                   "character_baker.recipe_tables): cannot load it"),
    ("echo_plugin:EchoBaker", "[echo]\ncopies = 3", "not a dataclass subclassing bakers.recipe.BakerSettings"),
])
def test_a_plugin_table_is_checked_like_the_recipe_s_own(tmp_path: Path, table: str, extra: str,
                                                        message: str) -> None:
    done = _with_plugin(tmp_path, table, extra)
    err = done.stderr.strip()
    assert done.returncode == 2 and "\n" not in err and "Traceback" not in err, done
    assert err.startswith("character-baker: error: ") and message in err, err


def test_without_the_plugin_its_table_is_an_unknown_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = _recipe(tmp_path, "pushpull", "[echo]\ncopies = 3")
    assert main(["round", str(recipe), "--dry-run"]) == 2
    assert f"{recipe}: unknown key 'echo'" in capsys.readouterr().err
