"""Training past one process: a bake's profile and training run as ranks under `accelerate launch`.

The round's process stays the conductor. With `[distributed] processes > 1` it starts

    python -m accelerate.commands.launch --config_file bakers/distributed/configs/<strategy>.yaml --num_processes N \\
        -m character_baker.bakers.distributed <output>/train/launch.json

and waits. Every rank loads the base on its own device, profiles its share of the examples (the statistics are
summed over ranks: `all_reduce_sum`, so the profile equals one process's), and trains under the Trainer, which
takes DDP, FSDP or DeepSpeed ZeRO-3 from the accelerate config it was launched with. Rank 0 writes what is
shared (the profile, checkpoints, `done.json`). The choice of a checkpoint on dev, the merges and the scoring
then run in the round's own process, from the saved checkpoints.

A rank that fails ends the whole launch (accelerate's agent stops the others); the round says which rank and why
in one line, and a rerun resumes from the last checkpoint the ranks saved.
"""

from .collective import all_gather, all_reduce_sum, barrier, is_main, main_first, parallel_kind, rank
from .launch import CONFIGS, check_kind, config_file, expected_kind, failure, last_checkpoint, train_in_ranks

__all__ = ["CONFIGS", "all_gather", "all_reduce_sum", "barrier", "check_kind", "config_file", "expected_kind",
           "failure", "is_main", "last_checkpoint", "main_first", "parallel_kind", "rank", "train_in_ranks"]
