"""`character-baker view` in a real browser: headless system Chromium driven by Playwright, over a board scored from
a responses file through the real `score` path (Inspect logs, the embedded judge, the store)."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from character_baker.cli import main
from character_baker.leaderboard.board import load_board
from character_baker.leaderboard.labels import read_labels

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium")
SCRIPT = "<script>window.__injected = 1</script> Fine, monkey: 11 times 23 is 253."

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs the system chromium (.ci/run installs it)")


@pytest.fixture(scope="module")
def scored_board(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("view")
    board = tmp / "skippy"
    shutil.copytree(ROOT / "leaderboards" / "skippy", board,
                    ignore=shutil.ignore_patterns("store.sqlite*", "*.png", "*.csv", "*.html", "README.md"))
    rows = [json.loads(line) for line in
            (ROOT / "character_baker/characters/skippy/examples/skippy_transcript.jsonl").read_text().splitlines()]
    for row in rows:
        if row["id"] == "pers-math-02":
            row["response"] = SCRIPT
    answers = tmp / "answers.jsonl"
    answers.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["score", "--candidate", f"responses:{answers}", "--tasks", "personality", "--limit", "3",
                 "--board", str(board), "--out", str(tmp / "runs")]) == 0
    return board


@pytest.fixture
def server(scored_board: Path) -> Iterator[str]:
    import uvicorn

    from character_baker.leaderboard.view import create_app

    board = load_board(scored_board)
    app = create_app(board, board.open_store(None), labeller="tester")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def test_board_to_reply_labels_survive_a_reload_and_markup_stays_text(server: str, scored_board: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server + "/")
        assert page.locator("#board tbody tr").count() == 1
        assert page.locator("#criteria li").count() >= 4  # the gate's criteria are on the page, not in a tooltip
        gate = page.locator("#board tbody td.PASS, #board tbody td.FAIL")
        assert gate.count() == 1 and gate.inner_text() in ("PASS", "FAIL")
        assert page.locator(".judge-card").count() >= 1
        sarcastic = page.locator("#board thead th", has_text="sarcastic").first
        sarcastic.click()  # sorts (one row: the order cannot change, the handler must not break the table)
        assert page.locator("#board tbody tr").count() == 1
        page.screenshot(path=str(ROOT / "docs" / "view-board.png"), full_page=True)

        cell = page.locator("#board tbody a.cell[href*='metric=sarcastic']").first
        hover = cell.locator("xpath=..").get_attribute("title") or ""
        assert "[" in hover and "/3)" in hover  # the full interval and counts on hover
        cell.click()  # click 1: the cell; its replies are on the page it opens
        page.wait_for_url("**/samples/**")
        replies = page.locator(".sample .reply")
        assert replies.count() == 3
        assert page.locator(".reply", has_text="<script>").count() == 1  # shown as text ...
        assert page.evaluate("window.__injected") is None  # ... never run
        assert "Fine, monkey" in replies.all_inner_texts()[1]
        page.screenshot(path=str(ROOT / "docs" / "view-samples.png"), full_page=True)

        page.goto(server + "/label")
        keys = []
        for answer in ("y", "n", "y"):
            key = page.locator("#current").get_attribute("data-key")
            keys.append(key)
            page.keyboard.press(answer)
            page.keyboard.press("k")  # no leak
            with page.expect_navigation():
                page.keyboard.press("Enter")
        assert len(set(keys)) == 3
        page.reload()
        assert "3 labelled" in page.inner_text("body")
        page.goto(server + "/samples/" + keys[0].split("|")[0] + "/personality/none?metric=sarcastic")
        assert page.locator(".sample", has_text="labelled by tester").count() == 3
        page.goto(server + "/")
        assert page.locator("#human tr").count() >= 2  # agreement with people on the board
        browser.close()

    gold = read_labels(scored_board / "labels" / "gold.jsonl")
    assert set(gold) == set(keys)
    assert [gold[k]["sarcastic"] for k in keys] == [True, False, True]
    assert all(g["labeller"] == "tester" and g["leak"] is False and g["labelled_at"].endswith("+00:00")
               for g in gold.values())
    assert all(g["response"] and g["prompt"] and "classifier" in g["judged"] for g in gold.values())
