"""The published board: index.html is the `view` app's board page, self-contained (ranked by the gate, then the board's
metric; criteria, cards and plots on the page), and model or board text never becomes markup in it or in README.md.
The report seam's formatter writes what the round, the bake-off and the board always wrote."""

from __future__ import annotations

import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from character_baker.cli import main
from character_baker.harness.stats import wilson
from character_baker.leaderboard.board import load_board
from character_baker.leaderboard.labels import agreement
from character_baker.leaderboard.publish import REPORTED, SHOWN_REPLY
from character_baker.leaderboard.report import cell, format_value, md, md_row, scale_label
from character_baker.leaderboard.store import Store
from character_baker.testing.cards import make_card, passing
from character_baker.testing.recipes import skippy_board

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = "**bold** <script>alert(1)</script> | [x](javascript:alert(1)) _u_ `code`"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node] = []
        self.parts: list[str] = []  # this node's own text and its children's, in order

    @property
    def text(self) -> str:
        return "".join(p if isinstance(p, str) else p.text for p in self.parts)

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def iter(self) -> Any:
        yield self
        for c in self.children:
            yield from c.iter()

    def find(self, tag: str, **attrs: str) -> list[Node]:
        return [n for n in self.iter() if n.tag == tag and all(n.attrs.get(k) == v for k, v in attrs.items())]


class Tree(HTMLParser):
    """The page as the browser's parser sees it (tags, attributes, text with entities decoded)."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = self.at = Node("#document", {}, None)
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs), self.at)
        self.at.children.append(node)
        self.at.parts.append(node)  # type: ignore[arg-type]
        if tag not in VOID:
            self.at = node

    def handle_endtag(self, tag: str) -> None:
        n: Node | None = self.at
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self.at = n.parent

    def handle_data(self, data: str) -> None:
        self.at.parts.append(data)


@pytest.fixture
def board(tmp_path: Path) -> Path:
    dest = skippy_board(tmp_path / "skippy")
    shutil.copy(ROOT / "leaderboards" / "skippy" / "history.toml", dest)  # the research log's reported figures
    return dest


def card_with_floors() -> dict[str, Any]:
    """A judge's validity card as `calibrate` writes it, with people's agreement from `calibrate --gold` on it."""
    human = agreement([(True, True)] * 25 + [(False, False)] * 10 + [(True, False)] * 3 + [(False, True)] * 2)
    return {"passed": True, "failures": [], "n": 120, "floors": {"accuracy": 0.8, "plain_false_positive": 0.1},
            "accuracy": {"value": 0.9, "ci": list(wilson(108, 120)), "k": 108, "n": 120},
            "kappa": {"value": 0.78}, "human": {"sarcastic": human, "gold": "labels/gold.jsonl", "labels": 40}}


def sarcastic(k: int, n: int = 20) -> dict[str, list[float | None]]:
    return {**passing(n), "personality/sarcastic:classifier": [1] * k + [0] * (n - k)}


def publish_page(board: Path) -> tuple[Node, str]:
    assert main(["publish", "--board", str(board)]) == 0
    page = (board / "index.html").read_text(encoding="utf-8")
    return Tree(page).root, page


def board_rows(doc: Node) -> list[Node]:
    [table] = doc.find("table", id="board")
    [body] = table.find("tbody")
    return body.find("tr")


def test_index_html_ranks_by_gate_then_sarcasm_with_criteria_cards_and_plots(board: Path) -> None:
    store = Store(board / "store.sqlite")
    card = card_with_floors()
    base = make_card("r1-base", sarcastic(2), round_="R1", validity=card)  # 10 % sarcastic: last on the metric
    base["candidate"]["lineage"]["role"] = "base"
    store.record(base)
    leaky = sarcastic(20)
    leaky["assistant_leaks/leak"] = [1] + [0] * 19  # 100 % sarcastic, but one leak: FAIL
    store.record(make_card("r1-x1.25", leaky, round_="R1", scale=1.25, validity=card))
    store.record(make_card("r1-x0.75", sarcastic(10), round_="R1", scale=0.75, validity=card))
    store.record(make_card("r1-x1", sarcastic(15), round_="R1", scale=1.0, validity=card))

    doc, page = publish_page(board)
    rows = board_rows(doc)
    # the base pinned first; passing candidates by sarcasm; the failing one last although it is the most sarcastic
    assert [r.attrs["data-candidate"] for r in rows] == ["r1-base", "r1-x1", "r1-x0.75", "r1-x1.25"]
    assert "base" in rows[0].classes
    gate = {r.attrs["data-candidate"]: r.find("td")[-2] for r in rows}
    assert [gate[c].text for c in ("r1-base", "r1-x1", "r1-x0.75", "r1-x1.25")] == ["base", "PASS", "PASS", "FAIL"]
    assert "PASS" in gate["r1-x1"].classes and "FAIL" in gate["r1-x1.25"].classes
    assert "assistant_leaks/leak[none] <= 0.0%" in (gate["r1-x1.25"].attrs["title"] or "")
    # the criteria and thresholds are text on the page, and so is what the failing candidate missed
    b = load_board(board)
    [criteria] = doc.find("ul", id="criteria")
    assert [li.text for li in criteria.find("li")] == [c.describe() for c in b.gate]
    assert "personality/sarcastic[none] >= 30.0%" in criteria.text
    [failures] = doc.find("ul", id="failures")
    assert [li.find("b")[0].text for li in failures.find("li")] == ["r1-x1.25"]
    assert "assistant_leaks/leak[none] <= 0.0% (fail)" in failures.text
    # a value is compact, its interval and counts on hover
    headers = [th.text.strip() for th in doc.find("table", id="board")[0].find("th")]
    x1 = rows[1].find("td")[headers.index("sarcastic")]
    low, high = wilson(15, 20)
    assert x1.text == "75.0%" and x1.attrs["title"] == f"75.0% [{100 * low:.1f}%–{100 * high:.1f}%] (15/20)"
    assert rows[1].find("td")[headers.index("scale")].text == "1" and rows[2].find("td")[3].text == "0.75"
    # the judge's card: its floors and people's agreement from `calibrate --gold`, as text
    [judge] = [d for d in doc.find("div") if "judge-card" in d.classes]
    assert "floors: accuracy 0.8, plain_false_positive 0.1" in judge.text
    assert "accuracy 90.0% [" in judge.text and "κ 0.78" in judge.text
    human = card["human"]["sarcastic"]
    assert f"sarcastic: n 40 · accuracy {100 * human['accuracy']['value']:.1f}% · κ {human['kappa']['value']:.2f}" \
        in judge.text
    # self-contained: the plots beside it by relative name, no link to a server or elsewhere, style inline
    images = [img.attrs["src"] for img in doc.find("img")]
    assert {"scales.png", "rounds.png", "pareto.png"} <= set(images)
    assert all((board / str(src)).is_file() for src in images)
    links = [n.attrs.get(k) or "" for n in doc.iter() for k in ("href", "src")]
    assert not [u for u in links if u.startswith("/") or "://" in u or u.startswith("//")]
    assert not doc.find("link") and doc.find("style") and not doc.find("nav")
    # nothing is reported here: no † mark and no legend for it
    assert "†" not in page and not doc.find("p", id="reported-legend")


def test_the_reported_legend_comes_with_a_reported_row(board: Path) -> None:
    Store(board / "store.sqlite").record(make_card("measured", passing()))
    assert main(["import-history", "--board", str(board)]) == 0
    doc, _ = publish_page(board)
    marked = [r for r in board_rows(doc) if r.find("td")[1].text.endswith("†")]
    assert marked and all(r.attrs["data-candidate"] != "measured" for r in marked)
    [legend] = doc.find("p", id="reported-legend")
    assert legend.text.startswith("† = reported, not re-measured")


def test_a_huge_reply_is_cut_and_markup_stays_text(board: Path) -> None:
    reply = "<script>window.pwned = 1</script>" + "Skippy " * 750_000  # over 5 MB
    store = Store(board / "store.sqlite")
    store.record(make_card("loud", passing(), example=reply))
    toml = (board / "board.toml").read_text()
    at = toml.index("[[gate]]")
    hostile_column = f'[[columns]]\nmetric = "personality/coherent"\nlabel = "{HOSTILE}"\n\n'
    hostile_gate = f'\n[[gate]]\nmetric = "personality/coherent"\ncondition = "{HOSTILE}"\nop = ">="\nthreshold = 0.5\n'
    head = "\n".join(f'title = "{HOSTILE}"' if line.startswith("title = ") else line
                     for line in toml[:at].splitlines()) + "\n"
    (board / "board.toml").write_text(head + hostile_column + toml[at:] + hostile_gate)
    b = load_board(board)
    assert b.title == HOSTILE and b.columns[-1].label == HOSTILE and b.gate[-1].condition == HOSTILE

    doc, page = publish_page(board)
    assert len(page) < 200_000  # the reply is not copied whole
    [row] = board_rows(doc)
    shown = row.find("td")[-1]
    [note] = [s for s in shown.find("span") if "cut" in s.classes]
    assert shown.text.startswith("<script>window.pwned = 1</script>Skippy Skippy")  # text, as the reader sees it
    assert len(shown.text) - len(note.text) == SHOWN_REPLY
    assert f"cut at {SHOWN_REPLY:,} of {len(reply):,} characters" in note.text and "character-baker view" in note.text
    # markup from the model or the board is text: the only script is the page's own sorter
    [script] = doc.find("script")
    assert "#board th" in script.text and "pwned" not in script.text and "alert" not in script.text
    assert doc.find("h1")[0].text == HOSTILE and doc.find("title")[0].text == HOSTILE
    assert HOSTILE in [th.text.strip() for th in doc.find("th")]
    assert f"personality/coherent[{HOSTILE}] >= 50.0%" in doc.find("ul", id="criteria")[0].text
    assert not [n for n in doc.iter() if n.tag in ("strong", "em", "a")]

    # README.md: the gate line and every cell carry the board's text, never its markup
    from markdown_it import MarkdownIt

    readme = (board / "README.md").read_text(encoding="utf-8")
    [gate] = [line for line in readme.splitlines() if line.startswith("Gate: ")]
    assert f"`personality/coherent[{HOSTILE.replace('`', chr(39))}] >= 50.0%`" in gate
    rendered = MarkdownIt("commonmark").enable("table").render(readme)
    assert "<script" not in rendered and "<strong>" not in rendered
    assert [em.text for em in Tree(rendered).root.find("em")] == [REPORTED]  # the README's own emphasis only
    assert "javascript:" not in "".join(n.attrs.get("href") or "" for n in Tree(rendered).root.iter())
    tree = Tree(rendered).root
    [leaderboard] = [t for t in tree.find("table") if "candidate" in t.text]
    header = [th.text for th in leaderboard.find("th")]
    assert header[-2] == HOSTILE.replace("`", "'") and len(header) == 4 + len(b.columns) + 1  # `|` broke no cell
    assert tree.find("h1")[0].text == HOSTILE.replace("`", "'")
    [line] = [p for p in tree.find("p") if p.text.startswith("Gate: ")]
    assert f"personality/coherent[{HOSTILE.replace('`', chr(39))}] >= 50.0%" in line.text


def test_one_formatter_writes_what_the_board_and_the_round_always_wrote() -> None:
    assert format_value(0.975, "sarcastic") == "97.5%" and format_value(7.125, "personality") == "7.12"
    assert format_value(None, "leak") == "—" and format_value(float("nan"), "leak") == "—"
    assert format_value(True, "leak") == "—"  # a flag is not a number
    assert format_value(-0.021, "sarcastic", signed=True) == "-2.1 pts" and format_value(0.05, signed=True) == "+0.05"
    assert format_value(0.0123, spec=".3f", signed=True) == "+0.012" and format_value(0.12345, spec=".4f") == "0.1235"
    assert format_value(0.5, True) == "50.0%" and format_value(0.5, False) == "0.50"
    assert scale_label(1.0) == "1" and scale_label(0.75) == "0.75" and scale_label(None) == ""
    low, high = wilson(3, 4)
    m = {"value": 0.75, "ci_low": low, "ci_high": high, "n": 4, "successes": 3, "errors": 0}
    assert cell(m, "math") == f"75.0% [{100 * low:.1f}%–{100 * high:.1f}%] (3/4)"
    assert cell(m, "math", with_ci=False) == "75.0% (3/4)"
    assert md_row(["a|b", "<b>x</b>", "**y** [z](javascript:1) # h", "#"]) == \
        "| a\\|b | &lt;b&gt;x&lt;/b&gt; | \\*\\*y\\*\\* \\[z](javascript:1) # h | # |"
    assert md("# heading") == "\\# heading" and md("a # b") == "a # b"
    assert md("line\nbreak `tick`") == "line break 'tick'"
