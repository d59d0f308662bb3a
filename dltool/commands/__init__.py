"""The commands behind the CLI, one module each: whole operations on runs (train, evaluate, predict, reports)."""
