"""`character-baker view`: the board as a local web app, every number one click from the replies behind it.

Pages: the board (criteria, PASS/FAIL, the judges' validity cards and people's agreement with them, plots), a
candidate (every metric per task and condition, lineage, routing shift), a cell's samples (prompt, reply with
reasoning folded, each judge's verdict, filters) with drift conversations turn by turn, and a labelling page
whose labels go to the board's gold file. Served on loopback by default; the only file it writes is
`<board>/labels/gold.jsonl`. Model text goes through Jinja's autoescaping.
"""

from __future__ import annotations

import getpass
import threading
from functools import cached_property
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates

from ..harness.errors import UserError
from .board import Board, Column
from .labels import append_label, gold_path, read_labels
from .publish import BoardView, board_context, page_env, render_plots
from .store import Store
from .transcripts import SampleView, cell_samples

LABEL_TASKS = ("personality", "identity", "assistant_leaks", "math_probes")


class BoardData:
    """What the pages read: the board's view, the store's results, the gold labels."""

    def __init__(self, board: Board, store: Store) -> None:
        self.board, self.store_path = board, store.path
        self._local = threading.local()
        self._local.store = store

    @property
    def store(self) -> Store:
        """SQLite connections stay in their thread: the server's worker threads each open their own."""
        if getattr(self._local, "store", None) is None:
            self._local.store = Store(self.store_path)
        return self._local.store

    @cached_property
    def view(self) -> BoardView:
        return BoardView(self.board, self.store)

    @cached_property
    def plots(self) -> dict[str, bytes]:
        return render_plots(self.view)

    @property
    def gold(self) -> Path:
        return gold_path(self.board.root)

    def rows(self) -> list[dict[str, Any]]:
        """The board's rows as ranked (`BoardView`): the base pinned first, then gate-passing candidates."""
        return self.view.rows

    def results(self, candidate: str) -> list[dict[str, Any]]:
        """The candidate's measured results (one per condition), newest last."""
        frame = self.view.measured.frame
        rows = frame[(frame.candidate == candidate) & (frame.reported == 0)].drop_duplicates("result_id")
        return [self.store.result(int(i)) for i in rows.sort_values("created").result_id]

    def result(self, candidate: str, condition: str) -> dict[str, Any] | None:
        found = [r for r in self.results(candidate) if r["condition"] == condition]
        return found[-1] if found else None

    def samples(self, candidate: str, task: str, condition: str) -> list[SampleView]:
        result = self.result(candidate, condition)
        return cell_samples(result, task) if result else []

    def find(self, key: str) -> SampleView | None:
        parts = key.split("|")
        if len(parts) != 5:
            return None
        candidate, task, condition = parts[:3]
        return next((s for s in self.samples(candidate, task, condition) if s.key == key), None)

    def queue(self, skip: set[str]) -> list[SampleView]:
        """Unlabelled single-turn replies: disagreements first, then round-robin over (candidate, task, verdict)."""
        labelled = set(read_labels(self.gold))
        strata: dict[tuple[str, str, Any], list[SampleView]] = {}
        first: list[SampleView] = []
        for r in self.rows():
            if r["reported"]:
                continue
            for result in self.results(r["candidate"]):
                for task in LABEL_TASKS:
                    for s in cell_samples(result, task):
                        if s.key in labelled or s.key in skip or s.error or not s.reply:
                            continue
                        if s.disagree:
                            first.append(s)
                            continue
                        verdict = tuple(sorted(s.judged("sarcastic").items()))
                        strata.setdefault((r["candidate"], task, verdict), []).append(s)
        out = list(first)
        lists = list(strata.values())
        while any(lists):
            for lst in lists:
                if lst:
                    out.append(lst.pop(0))
        return out


def create_app(board: Board, store: Store, labeller: str | None = None) -> FastAPI:
    """The FastAPI app over one board."""
    data = BoardData(board, store)
    templates = Jinja2Templates(env=page_env())  # autoescaped: model text is never markup
    who = labeller or getpass.getuser() or "anonymous"
    app = FastAPI(title=f"character-baker: {board.name}", docs_url=None, redoc_url=None, openapi_url=None)

    def page(request: Request, name: str, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {"board": board, "static": False, **context})

    @app.get("/", response_class=HTMLResponse)
    def board_page(request: Request) -> HTMLResponse:
        return page(request, "board.html", **board_context(data.view, data.store, sorted(data.plots), static=False))

    @app.get("/plot/{name}")
    def plot(name: str) -> Response:
        if name not in data.plots:
            raise HTTPException(404, f"no plot {name}")
        return Response(data.plots[name], media_type="image/png")

    @app.get("/candidate/{candidate}", response_class=HTMLResponse)
    def candidate_page(request: Request, candidate: str) -> HTMLResponse:
        results = data.results(candidate)
        row = next((r for r in data.view.rows if r["candidate"] == candidate), None)
        if row is None:
            raise HTTPException(404, f"no candidate {candidate} on this board")
        frame = data.view.measured.frame
        mine = frame[(frame.candidate == candidate) & frame.task.notna()].sort_values(["task", "condition", "metric"])
        metrics = [{k: (None if v != v else v) for k, v in m.items()} for m in mine.to_dict("records")]
        lineage = results[-1]["lineage"] if results else {}
        return page(request, "candidate.html", candidate=candidate, row=row, metrics=metrics, lineage=lineage,
                    conditions=sorted({r["condition"] for r in results}))

    @app.get("/samples/{candidate}/{task}/{condition}", response_class=HTMLResponse)
    def samples_page(request: Request, candidate: str, task: str, condition: str, metric: str = "",
                     failed: int = 0, disagree: int = 0) -> HTMLResponse:
        samples = data.samples(candidate, task, condition)
        metric = metric or next((k.split(":")[0] for s in samples for k in s.values), "")
        shown = [s for s in samples if (not failed or s.failed(metric)) and (not disagree or s.disagree)]
        conditions = sorted({r["condition"] for r in data.results(candidate)})
        return page(request, "samples.html", candidate=candidate, task=task, condition=condition, metric=metric,
                    samples=shown, total=len(samples), failed=failed, disagree=disagree, conditions=conditions,
                    labels=read_labels(data.gold))

    @app.get("/label", response_class=HTMLResponse)
    def label_page(request: Request, skip: str = "") -> HTMLResponse:
        queue = data.queue({k for k in skip.split(",") if k})
        return page(request, "label.html", sample=queue[0] if queue else None, left=len(queue), labeller=who,
                    labelled=len(read_labels(data.gold)), skip=skip)

    @app.post("/api/label")
    async def label(request: Request) -> JSONResponse:
        body = await request.json()
        if not isinstance(body, dict) or not isinstance(body.get("key"), str):
            raise HTTPException(400, "a label needs the reply's key")
        sample = data.find(body["key"])
        if sample is None:
            raise HTTPException(404, f"no reply {body['key']!r} on this board")
        row = {"id": sample.key, "prompt": sample.prompt, "response": sample.reply, "condition": sample.condition,
               **{f: body.get(f) for f in ("sarcastic", "leak", "coherent")},
               "source": dict(zip(("candidate", "task", "condition", "sample", "epoch"), sample.key.split("|"),
                                  strict=True)),
               "judged": {name: {"sarcastic": sample.values.get(f"sarcastic:{name}"),
                                 "leak": v.get("leak"), "coherent": v.get("coherent")}
                          for name, v in sample.verdicts.items()}}
        try:
            written = append_label(data.gold, row, str(body.get("labeller") or who))
        except UserError as e:
            raise HTTPException(400, str(e)) from None
        return JSONResponse({"ok": True, "id": written["id"], "labelled_at": written["labelled_at"]})

    return app


def serve(board: Board, store: Store, host: str = "127.0.0.1", port: int = 0, labeller: str | None = None) -> None:
    """Run the app with uvicorn until interrupted; port 0 picks a free one (printed)."""
    import socket

    import uvicorn

    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"character-baker: serving on {host}: anyone who can reach it can read the board and write labels")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.bind((host, port))
    print(f"board '{board.name}' at http://{host}:{sock.getsockname()[1]}/  (Ctrl-C to stop)", flush=True)
    config = uvicorn.Config(create_app(board, store, labeller), log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])


__all__ = ["BoardData", "Column", "create_app", "serve"]
