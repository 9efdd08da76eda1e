"""The core: character packs, candidates, judges, statistics, scorecards and the CLI."""
