"""The functions `aime.yaml` names (`!function utils.process_results`, ...).

lm-eval loads this file by path as a loose module (not registered in `sys.modules` while it runs), so it only
re-exports: the code lives in `character_baker.tasks.aime.scoring`, which the harness imports too.
"""

from character_baker.tasks.aime.scoring import doc_to_text, keep_all, process_docs, process_results

__all__ = ["doc_to_text", "keep_all", "process_docs", "process_results"]
