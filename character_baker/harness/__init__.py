"""The suite core: character packs, data files, candidates, Inspect providers, model loading, scorecards, statistics."""
