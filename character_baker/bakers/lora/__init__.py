"""The bakers that train LoRA: `base.LoraBaker` (training as one process or as ranks, the choice of a checkpoint on
dev in `selection.py`, merges at scales, lineage) and the methods on it, each overriding only what differs:
`pushpull` (the profile and its regulariser), `sft` (nothing: the control), `dpo` and `grpo` (TRL's Trainers),
`sdft` (the base's own restatements as the data)."""
