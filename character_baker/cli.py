"""The `character-baker` command line. Bad input: one line on stderr, exit 2; `--debug` shows the traceback."""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import re
import sqlite3
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .harness.console import console
from .harness.errors import UserError
from .harness.loading import REASONING_EFFORTS
from .judges.verdict import JUDGE_RETRIES, JUDGE_TIMEOUT_S


def writable(folder: Path, what: str) -> None:
    """A folder a command will write into, checked before any work: one line starting with `what` (the flag and the
    path it was given) when nothing can be created there (read-only, another user's, a file in the way)."""
    from .harness.data import unwritable

    problem = unwritable(folder)
    if problem:
        raise UserError(f"{what}: {problem}")


def _csv(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="character-baker",
                                     description="Evaluation-first harness for baking a character into LLMs.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("score", help="score candidates on a character's persona suite")
    s.add_argument("--candidate", action="append", required=True,
                   help="model dir, adapter dir, responses:FILE.jsonl, hub id or Inspect model (repeatable)")
    s.add_argument("--suite", default="skippy",
                   help="character pack (a name or a path; default skippy), or 'capability' for AIME only")
    s.add_argument("--judge", default=None,
                   help="classifier | <inspect model> | name=<model>,...; an LLM judge takes ?timeout=SECONDS&"
                   f"retries=N per call (default {JUDGE_TIMEOUT_S} s, {JUDGE_RETRIES} retries) and ?logprobs "
                   "(default: $CHARACTER_BAKER_JUDGE or classifier)")
    s.add_argument("--conditions", type=_csv, default=("none",),
                   help="none,character,assistant,break; wrapped prompts: tool_result,json,email,code_review")
    s.add_argument("--tasks", type=_csv, default=None,
                   help="identity,personality,assistant_leaks,math_probes (default: all four); drift (multi-turn), "
                   "tools (household tool calls)")
    s.add_argument("--epochs", type=int, default=1, help="answers sampled per prompt (k > 1 samples at T=0.7)")
    s.add_argument("--temperature", type=float, default=None)
    s.add_argument("--max-tokens", type=int, default=512)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", type=Path, default=Path("runs"), help="where logs and scorecards go (default: runs/)")
    s.add_argument("--id", dest="candidate_id", default=None, help="candidate id (default: derived from content)")
    s.add_argument("--base", default=None, help="base model for an adapter candidate")
    s.add_argument("--scale", type=float, default=1.0, help="merge scale for an adapter candidate")
    s.add_argument("--batch-size", type=int, default=8, help="generation batch size for local models")
    s.add_argument("--trust-remote-code", action="store_true")
    s.add_argument("--limit", type=int, default=None, help="first N prompts of each task only (smoke runs)")
    s.add_argument("--max-samples", type=int, default=None)
    s.add_argument("--display", default=None, help="Inspect display: rich, plain, log, none")
    s.add_argument("--no-cache", action="store_true", help="judge again instead of reading the judgment cache")
    s.add_argument("--capability", nargs="?", const="aime24", default=None, metavar="DATA",
                   help="also run the capability suite: aime24 (default), aime25, fixture or a JSONL {id, problem, "
                   "answer}")
    s.add_argument("--capability-k", type=int, default=1, help="AIME samples per problem (avg@k, pass@k)")
    s.add_argument("--capability-max-tokens", type=int, default=4096)
    s.add_argument("--capability-tasks", type=_csv, default=(), help="extra lm-eval tasks, e.g. gsm8k,ifeval")
    s.add_argument("--monitor", default=None, metavar="PROFILE",
                   help="a bake's profile folder: project each reply onto its persona direction and report the "
                   "agreement with the judge (AUROC) and a per-turn drift meter")
    s.add_argument("--monitor-layer", type=int, default=None,
                   help="the profiled layer to read (default: the one of most contrast)")
    s.add_argument("--reasoning-effort", default=None, choices=REASONING_EFFORTS,
                   help="GPT-OSS: the chat template's reasoning effort, for every task (recorded in the scorecard)")
    s.add_argument("--engine", default=None, choices=("auto", "vllm", "transformers", "inprocess"),
                   help="what generates a local model's replies: a server per model (auto: vllm on a CUDA GPU with "
                   "vllm installed, else transformers serve) or inprocess (default: $CHARACTER_BAKER_ENGINE or "
                   "inprocess; a round's [engine] defaults to auto); recorded in the scorecard")
    s.add_argument("--max-concurrency", type=int, default=None,
                   help="requests in flight to a served engine (default 16)")
    s.add_argument("--board", default=None, help="also record the scorecards in this board's store")
    s.add_argument("--store", default=None, help="store file (default: the board's)")
    s.add_argument("--json", action="store_true",
                   help="print one JSON object on stdout (each scorecard's path, metrics and empty tasks); "
                   "same exit status")

    j = sub.add_parser("judge", help="judge {id, prompt, response, answer?, condition?} rows from a JSONL file: every "
                       "verdict `score` gives the same reply, with its reason (docs/VERDICTS.md)")
    j.add_argument("--judge", default=None)
    j.add_argument("--input", type=Path, required=True)
    j.add_argument("--out", type=Path, required=True)
    j.add_argument("--suite", default="skippy", help="character pack whose rubric and patterns apply")
    j.add_argument("--no-cache", action="store_true", help="ignore and do not write the judgment cache")
    j.add_argument("--concurrency", type=int, default=16)

    c = sub.add_parser("calibrate", help="measure a judge against the pack's labelled calibration set")
    c.add_argument("--judge", default=None)
    c.add_argument("--suite", default="skippy")
    c.add_argument("--input", type=Path, default=None, help="labelled rows {id, prompt, response, sarcastic}")
    c.add_argument("--no-cache", action="store_true")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.add_argument("--gold", type=Path, default=None,
                   help="a board's gold labels (labels/gold.jsonl, from `view`): add each judge's agreement with "
                   "people to its validity card and to the board (never used to train a judge)")

    def board_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--board", required=True, help="board name (leaderboards/NAME) or folder")
        p.add_argument("--store", default=None, help="store file (default: the board's, or $CHARACTER_BAKER_STORE)")

    r = sub.add_parser("record", help="record scorecard files in a board's store")
    board_args(r)
    r.add_argument("scorecards", nargs="+", type=Path)

    h = sub.add_parser("import-history", help="import reported results (rows marked reported, not re-measured)")
    board_args(h)
    h.add_argument("--file", type=Path, default=None, help="history TOML (default: the board's history.toml)")

    g = sub.add_parser("gate", help="PASS/FAIL a candidate against the board's gate (exit 0 pass, 1 fail, 2 refused)")
    board_args(g)
    g.add_argument("--candidate", required=True)
    g.add_argument("--allow-unvalidated-judge", action="store_true",
                   help="gate even when a judge's validity card is missing or misses a floor (the output says so)")
    g.add_argument("--json", action="store_true", help="print the verdicts as one JSON object; same exit status")

    rg = sub.add_parser("regress", help="paired comparison of a candidate against a baseline (exit 1 on regression)")
    board_args(rg)
    rg.add_argument("--baseline", required=True, help="candidate id or round name")
    rg.add_argument("--candidate", required=True)
    rg.add_argument("--tolerance", default=None, help="0.05, or per metric: personality/sarcastic=0.1,leak=0")
    rg.add_argument("--alpha", type=float, default=0.05)
    rg.add_argument("--condition", default=None)
    rg.add_argument("--allow-mismatch", action="store_true")
    rg.add_argument("--junit", type=Path, default=None)
    rg.add_argument("--json", action="store_true", help="print the comparisons as one JSON object; same exit status")

    sub.add_parser("bakers", help="list the installed bakers")
    pr = sub.add_parser("profile", help="profile a recipe's base model: push/pull units per layer, report")
    pr.add_argument("recipe", type=Path)
    bk = sub.add_parser("bake", help="run a recipe's baker: candidates at each merge scale, with lineage")
    bk.add_argument("recipe", type=Path)

    rd = sub.add_parser("round", help="bake, score, record, gate and publish one round (exit 0 success, 1 fail)")
    rd.add_argument("recipe", type=Path)
    rd.add_argument("--dry-run", action="store_true", help="print the plan and the preconditions; do nothing")

    bo = sub.add_parser("bakeoff", help="several bakers on one round recipe, one board, each compared with the control")
    bo.add_argument("config", type=Path, help="a bake-off file (rounds/bakeoff.toml)")

    v = sub.add_parser("view", help="serve the board locally: every number one click from its replies, and a "
                       "labelling page (labels go to <board>/labels/gold.jsonl)")
    board_args(v)
    v.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (loopback only)")
    v.add_argument("--port", type=int, default=0, help="default 0: a free port, printed")
    v.add_argument("--labeller", default=None, help="name stamped on labels (default: your user name)")

    pb = sub.add_parser("publish", help="write README.md, results.csv, index.html and plots into the board folder")
    board_args(pb)
    pb.add_argument("--out", type=Path, default=None)
    return parser


def cmd_score(args: argparse.Namespace) -> int:
    import os

    from .harness.candidates import check_id, resolve_candidate
    from .harness.character import DEFAULT_TASKS
    from .harness.scorecard import empty_tasks, format_table, monitor_lines, silent_judges
    from .serving.engine import EngineConfig
    from .tasks.score import ScoreOptions, score_candidate

    capability_only = args.suite == "capability"
    opts = ScoreOptions(character="skippy" if capability_only else args.suite, judge=args.judge,
                        conditions=args.conditions, tasks=() if capability_only else (args.tasks or DEFAULT_TASKS),
                        capability=args.capability or ("aime24" if capability_only else None),
                        capability_k=args.capability_k, capability_max_tokens=args.capability_max_tokens,
                        capability_tasks=args.capability_tasks, reasoning_effort=args.reasoning_effort,
                        epochs=args.epochs, max_tokens=args.max_tokens,
                        temperature=args.temperature, seed=args.seed, out=args.out, max_samples=args.max_samples,
                        display=args.display or ("none" if args.json else None), limit=args.limit,
                        judge_cache=not args.no_cache,
                        monitor=args.monitor, monitor_layer=args.monitor_layer,
                        engine=args.engine or os.environ.get("CHARACTER_BAKER_ENGINE") or "inprocess",
                        engine_config=EngineConfig(max_concurrency=args.max_concurrency or 16))
    if args.epochs < 1:
        raise UserError("--epochs must be at least 1")
    if len(args.candidate) > 1 and args.candidate_id:
        raise UserError("--id names one candidate; drop it when scoring several")
    writable(args.out, f"--out {args.out}")
    candidates = [resolve_candidate(spec, base=args.base, scale=args.scale, candidate_id=args.candidate_id,
                                    batch_size=args.batch_size, trust_remote_code=args.trust_remote_code)
                  for spec in args.candidate]
    for spec, cand in zip(args.candidate, candidates, strict=True):  # what `record` would refuse, before the run
        if not args.candidate_id:
            try:
                check_id(cand.id, f"--candidate {spec}: its derived id")
            except UserError as e:
                raise UserError(f"{e}; name it with --id") from None
    board = store = None
    if args.board:
        from .leaderboard.board import load_board

        board = load_board(args.board)
        store = board.open_store(args.store)
    status = 0
    report: list[dict[str, Any]] = []
    say = console().print if not args.json else (lambda *a, **k: None)  # --json: stdout holds the JSON only
    for cand in candidates:
        card, path = score_candidate(cand, opts)
        empty = empty_tasks(card)
        report.append({"candidate": cand.id, "scorecard": str(path), "empty_tasks": empty,
                       "metrics": card.to_json()["metrics"],
                       "judges": [{"name": j["name"], "validated": bool(j["validity"].get("passed"))}
                                  for j in card.judges]})
        say(format_table(card))
        if card.monitor:
            say(monitor_lines(card.monitor))
        say(f"scorecard: {path}")
        for judge in card.judges:
            if not judge["validity"].get("passed"):
                say(f"[yellow]judge '{judge['name']}' is not validated: "
                                f"{'; '.join(judge['validity'].get('failures') or [])}[/yellow]", highlight=False)
        for a in card.agreement:
            kappa = "n/a" if a["kappa"] is None else f"{a['kappa']:.2f}"
            share = "n/a" if a["agreement"] is None else f"{100 * a['agreement']:.1f}%"
            say(f"agreement on {a['task']}/{a.get('metric', 'sarcastic')} ({a['condition']}), "
                            f"{' vs '.join(a['judges'])}: {share} of {a['n']}, kappa {kappa}", highlight=False)
        failed = card.suite.get("failed_samples") or {}
        if failed:
            say(f"[yellow]{sum(failed.values())} samples failed ("
                            + ", ".join(f"{k}: {v}" for k, v in sorted(failed.items()))
                            + "); they count as errors. Rerun the same command to retry them.[/yellow]",
                            highlight=False)
        if empty:
            print(f"character-baker: error: {cand.id}: no valid sample in {', '.join(empty)} "
                  f"(every generation or judgment failed; see {path.parent / 'logs'})", file=sys.stderr)
            status = 1
        elif silent := silent_judges(card):  # the judged metrics are all errors, however well the rest went
            print(f"character-baker: error: {cand.id}: judge {', '.join(repr(j) for j in silent)} produced no valid "
                  f"judgment (every call failed; counted as errors, see {path.parent / 'logs'})", file=sys.stderr)
            status = 1
        if store is not None and board is not None:
            store.record(card.to_json())
            say(f"recorded in board '{board.name}' ({store.path})")
    if args.json:
        print(json.dumps({"status": status, "candidates": report}, indent=2))
    return status


def _board(args: argparse.Namespace) -> tuple[Any, Any]:
    from .leaderboard.board import load_board

    board = load_board(args.board)
    return board, board.open_store(args.store)


def cmd_record(args: argparse.Namespace) -> int:
    from .harness.scorecard import read_scorecard

    board, store = _board(args)
    cards = [read_scorecard(path) for path in args.scorecards]  # the scorecard schema, file by file
    store.record_many(cards, where=[str(p) for p in args.scorecards])  # all or none
    print(f"recorded {len(args.scorecards)} scorecard(s) in {store.path} ({store.count()} rows)")
    return 0


def cmd_import_history(args: argparse.Namespace) -> int:
    from .leaderboard.history import import_history

    board, store = _board(args)
    n = import_history(args.file or board.root / "history.toml", board, store)
    print(f"imported {n} reported candidate(s) into {store.path}")
    return 0


def cmd_gate(args: argparse.Namespace) -> int:
    from .leaderboard.board import Measurements, evaluate, gate_lines, unvalidated

    board, store = _board(args)
    measured = Measurements(store.frame(suite=board.suite))
    if args.candidate not in measured.candidates:
        raise UserError(f"candidate '{args.candidate}' is not on board '{board.name}' ({store.path})")
    if not board.gate:
        raise UserError(f"board '{board.name}' has no [[gate]] criteria")
    doubts = unvalidated(board, store, args.candidate)
    if doubts and not args.allow_unvalidated_judge:
        raise UserError(f"gate refuses: {doubts[0]} (run `character-baker calibrate`, use a validated judge, or "
                        "pass --allow-unvalidated-judge to gate anyway)")
    verdicts = evaluate(board, measured, args.candidate)
    passed = all(v.passed for v in verdicts)
    if args.json:
        print(json.dumps({"candidate": args.candidate, "board": board.name, "passed": passed,
                          "unvalidated": doubts, "criteria": [verdict_json(v) for v in verdicts]}, indent=2))
        return 0 if passed else 1
    note = " (judge NOT validated: " + "; ".join(doubts) + ")" if doubts else ""
    print(f"{'PASS' if passed else 'FAIL'}: {args.candidate} on board '{board.name}'{note}")
    for line in gate_lines(verdicts):
        print("  " + line)
    return 0 if passed else 1


def verdict_json(v: Any) -> dict[str, Any]:
    """One gate criterion's verdict, for scripts."""
    c = v.criterion
    return {"criterion": c.describe(), "metric": c.metric, "condition": c.condition, "judge": c.judge, "op": c.op,
            "threshold": c.threshold, "relative_to": c.relative_to, "passed": v.passed, "value": v.value,
            "low": v.low, "high": v.high, "compared": v.compared, "reason": v.reason,
            "judge_error": v.judged.describe() if v.judged is not None else v.judge_error_unknown}


def cmd_regress(args: argparse.Namespace) -> int:
    from .leaderboard.regress import compare, describe, junit, pair_results, parse_tolerances, resolve_result

    if args.junit:  # before any work: an unwritable report is exit 2, never the "regressed" exit 1
        writable(args.junit.parent, f"--junit {args.junit}")
        if args.junit.is_dir():
            raise UserError(f"--junit {args.junit}: a folder; name the XML file to write")
    board, store = _board(args)
    frame = store.frame(suite=board.suite)
    base = resolve_result(store, board, frame, args.baseline, args.condition)
    cand = resolve_result(store, board, frame, args.candidate, args.condition)
    tolerances = parse_tolerances(args.tolerance)
    comparisons = []
    for b, c in pair_results(base, cand, args.allow_mismatch):
        comparisons += compare(b, c, tolerances, alpha=args.alpha)
    if not comparisons:
        raise UserError("no metric measured on the same prompts by both (are per-prompt samples recorded?)")
    if args.junit:
        junit(comparisons, args.junit, f"character-baker regress {board.name}")
    regressed = [c for c in comparisons if c.regressed]
    if args.json:
        print(json.dumps({"baseline": base[0]["candidate"], "candidate": cand[0]["candidate"], "alpha": args.alpha,
                          "regressed": len(regressed), "compared": len(comparisons),
                          "comparisons": [{"name": c.name, **asdict(c)} for c in comparisons]}, indent=2))
        return 1 if regressed else 0
    print(f"regress: {cand[0]['candidate']} against baseline {base[0]['candidate']} (alpha {args.alpha})")
    for comp in comparisons:
        print("  " + describe(comp))
    print(f"{len(regressed)} of {len(comparisons)} metrics regressed")
    return 1 if regressed else 0


def cmd_publish(args: argparse.Namespace) -> int:
    from .leaderboard.publish import publish

    board, store = _board(args)
    writable(args.out or board.root, f"--out {args.out}" if args.out else f"board '{board.name}': {board.root}")
    written = publish(board, store, args.out)
    print(f"published board '{board.name}': " + ", ".join(str(p) for p in written))
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    from .leaderboard.view import serve

    board, store = _board(args)
    serve(board, store, host=args.host, port=args.port, labeller=args.labeller)
    return 0


def cmd_calibrate_gold(args: argparse.Namespace) -> int:
    """People's labels against each judge: the agreement goes on the judge's stored card and beside the gold file,
    where the board reads it."""
    from .harness.character import load_character
    from .harness.data import atomic_write
    from .judges.calibration import Row, judge_rows
    from .judges.reply import build_judges
    from .judges.validity import load_card, save_card
    from .leaderboard.labels import human_agreement, read_labels

    labels = list(read_labels(args.gold).values())
    if not labels:
        raise UserError(f"{args.gold}: no labels (label replies with `character-baker view`)")
    for lab in labels:
        for key in ("prompt", "response"):
            if not isinstance(lab.get(key), str):
                raise UserError(f"{args.gold}: label '{lab['id']}' has no text field '{key}'")
        if not isinstance(lab.get("sarcastic"), bool):
            raise UserError(f"{args.gold}: label '{lab['id']}': field 'sarcastic' must be true or false")
    pack = load_character(args.suite)
    judges = build_judges(args.judge, pack, use_cache=not args.no_cache)
    rows = [Row(lab["id"], lab["prompt"], lab["response"], label=lab["sarcastic"]) for lab in labels]
    verdicts = asyncio.run(judge_rows(judges, rows, progress=sys.stderr.isatty()))
    by_label = [{j.name: {"sarcastic": v.sarcastic, "leak": v.leak, "coherent": v.coherent}
                 for j, v in zip(judges, vs, strict=True) if v.ok} for vs in verdicts]
    report = {"gold": str(args.gold), "labels": len(labels),
              "labellers": sorted({str(lab.get("labeller")) for lab in labels}),
              "judges": human_agreement(labels, by_label)}
    for judge in judges:
        inner = getattr(judge, "inner", judge)
        card = load_card(inner, pack)
        if card is not None and judge.name in report["judges"]:
            card["human"] = {**report["judges"][judge.name], "gold": str(args.gold), "labels": len(labels)}
            save_card(inner, pack, card)
    atomic_write(args.gold.with_name("agreement.json"), json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"agreement with people on {len(labels)} labelled replies ({args.gold}):")
    for name, fields in report["judges"].items():
        for field, a in fields.items():
            k = a["kappa"]
            kappa = "n/a" if k["value"] is None else f"{k['value']:.2f}" + (
                f" [{k['ci'][0]:.2f}, {k['ci'][1]:.2f}]" if k["ci"] else "")
            acc = "n/a" if a["accuracy"] is None else f"{100 * a['accuracy']['value']:.1f}%"
            print(f"  {name:<12} {field:<10} n={a['n']:<4} accuracy {acc:<7} kappa {kappa}")
    return 0


def cmd_judge(args: argparse.Namespace) -> int:
    from .harness.character import load_character
    from .judges.calibration import judge_replies, load_rows, write_jsonl
    from .judges.reply import ReplyJudge

    pack = load_character(args.suite)
    rows = load_rows(args.input)
    writable(args.out.parent, f"--out {args.out}")
    rj = ReplyJudge(pack, args.judge, use_cache=not args.no_cache)
    out = asyncio.run(judge_replies(rj, rows, concurrency=args.concurrency, progress=sys.stderr.isatty()))
    write_jsonl(args.out, out)
    errors = sum(1 for r in out if r["error"])
    print(f"judged {len(out)} rows with {', '.join(j.id for j in rj.judges)}: {errors} errors -> {args.out}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    if args.gold is not None:
        if args.input is not None:
            raise UserError("--gold and --input measure against different labels: give one")
        return cmd_calibrate_gold(args)
    from rich.table import Table

    from .harness.character import load_character
    from .judges.calibration import load_rows
    from .judges.llm import LLMJudge
    from .judges.reply import build_judges
    from .judges.validity import compute_card, save_card

    pack = load_character(args.suite)
    judges = build_judges(args.judge, pack, use_cache=not args.no_cache)
    rows = load_rows(args.input, labelled=True) if args.input else None
    cards = []
    for judge in judges:
        inner = getattr(judge, "inner", judge)
        reask = (LLMJudge(inner.model, pack, name=inner.name, seed=inner.seed + 1, logprobs=inner.logprobs)
                 if isinstance(inner, LLMJudge) else None)
        card = compute_card(judge, pack, progress=sys.stderr.isatty(), reask=reask, rows=rows)
        if args.input is None:  # only the pack's own calibration set makes the judge's record
            card["stored"] = str(save_card(inner, pack, card))
        cards.append(card)
    if args.json:
        print(json.dumps(cards, indent=2))
        return 0
    where = str(args.input) + " (report only; the judge's record is untouched)" if args.input else pack.slug
    table = Table(title=f"judge validity cards on {len(rows) if rows else cards[0]['n']} labelled responses ({where})")
    for col in ("judge", "accuracy", "kappa", "mimicry pts", "salad rejected", "nonsense rejected", "plain FP",
                "length ρ", "self-agreement", "card"):
        table.add_column(col)

    def cell(m: dict | None, pct: bool = False) -> str:  # type: ignore[type-arg]
        if not m or m.get("value") is None:
            return "n/a"
        ci = m.get("ci")
        f = (lambda x: f"{100 * x:.1f}%") if pct else (lambda x: f"{x:.3f}")
        return f(m["value"]) + (f" [{f(ci[0])}–{f(ci[1])}]" if ci else "")

    for c in cards:
        mim = c["mimicry"]
        mim_text = "n/a" if mim["points"] is None else f"{mim['points']:+.1f}" + (
            f" [{mim['ci'][0]:+.1f}–{mim['ci'][1]:+.1f}]" if mim["ci"] else "")
        rho = c["length_bias"]["spearman"]
        agree = c.get("self_agreement")
        table.add_row(c["name"], cell(c["accuracy"]), cell(c["kappa"]), mim_text, cell(c["salad"], True),
                      cell(c["fluent_nonsense"], True), cell(c["plain_false_positive"], True),
                      "n/a" if rho is None else f"{rho:+.2f}",
                      "n/a" if not agree or agree["agreement"] is None else f"{100 * agree['agreement']:.1f}%",
                      "PASS" if c["passed"] else "FAIL: " + "; ".join(c["failures"]))
    console().print(table)
    return 0


def cmd_bakers(args: argparse.Namespace) -> int:
    from .bakers import available, get_baker

    for name in sorted(available()):
        print(f"{name:<12} {get_baker(name).description}")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from .bakers.lora.pushpull import PushPullBaker
    from .bakers.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    profile, report = PushPullBaker().profile(recipe, progress=sys.stderr.isatty())
    print(f"profiled layers {profile.layers} of {recipe.base}: report {report}")
    return 0


def cmd_bake(args: argparse.Namespace) -> int:
    from .bakers import get_baker
    from .bakers.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    baked = get_baker(recipe.baker).bake(recipe, progress=sys.stderr.isatty())
    for b in baked:
        print(f"candidate {b.path}  (round {b.lineage.get('round')}, step {b.lineage.get('step')}, "
              f"scale {b.lineage.get('scale')})")
    return 0


def cmd_round(args: argparse.Namespace) -> int:
    from .rounds.round import run_round

    if args.dry_run:  # the plan's own status: 0 only for a valid recipe
        from .rounds.plan import main as print_plan

        return print_plan([str(args.recipe), "--dry-run"])
    result = run_round(args.recipe, progress=sys.stderr.isatty())
    if result is None:
        return 0
    print(result.line)
    if result.toy:
        print("(a toy model trained in minutes on this machine: the numbers demonstrate the pipeline, not the method)")
    return 0 if result.success else 1


def cmd_bakeoff(args: argparse.Namespace) -> int:
    from .rounds.bakeoff import run_bakeoff

    return run_bakeoff(args.config, progress=sys.stderr.isatty())


COMMANDS = {"score": cmd_score, "judge": cmd_judge, "calibrate": cmd_calibrate, "record": cmd_record,
            "import-history": cmd_import_history, "gate": cmd_gate, "regress": cmd_regress, "publish": cmd_publish,
            "view": cmd_view,
            "bakers": cmd_bakers, "profile": cmd_profile, "bake": cmd_bake, "round": cmd_round,
            "bakeoff": cmd_bakeoff}


# SQLite errors of the code, not of the file (a closed connection, a bad statement, a broken constraint): a traceback
SQL_BUGS = (sqlite3.ProgrammingError, sqlite3.InterfaceError, sqlite3.IntegrityError)


def file_error(e: OSError | sqlite3.DatabaseError) -> str:
    """One line for an error of the file system or of SQLite that escaped a command: the file and what happened.
    Programming errors (TypeError and the like) are not these, and keep their traceback."""
    if isinstance(e, OSError):
        where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
        code = f" ({errno.errorcode[e.errno]})" if isinstance(e.errno, int) and e.errno in errno.errorcode else ""
        what = (e.strerror or str(e)) + code
        return f"{where}: {what}" if where else what
    return f"{_database_of(e) or 'SQLite database'}: SQLite error: {e}"


def _database_of(e: BaseException) -> str | None:
    """The file of the SQLite connection an error came from: the innermost frame of its traceback whose `self` holds
    a connection and a `path` (the leaderboard store, the judgment cache)."""
    frames = []
    tb = e.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        owner = frame.f_locals.get("self")
        fields = getattr(owner, "__dict__", {})
        if any(isinstance(v, sqlite3.Connection) for v in fields.values()) and fields.get("path") is not None:
            return str(fields["path"])
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not sys.stderr.isatty():  # keep logs readable: no per-file weight-loading bars in pipes and CI
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    try:
        return COMMANDS[args.command](args)
    except UserError as e:
        if args.debug:
            raise
        print(f"character-baker: error: {e}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.DatabaseError) as e:  # the disk, not the code: a full disk, a read-only folder
        if args.debug or isinstance(e, SQL_BUGS):
            raise
        print(f"character-baker: error: {file_error(e)}", file=sys.stderr)
        return 2
    except Exception as e:
        if args.debug or type(e).__name__ != "PrerequisiteError":
            raise
        # Inspect's "set X in the environment" errors: one line, without their rich markup
        text = re.sub(r"\[/?[a-z ]+\]", "", str(e)).replace("ERROR: ", "")
        print(f"character-baker: error: {' '.join(text.split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("character-baker: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
