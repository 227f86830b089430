sweep
tests/errors/sweep-empty-range.yaml
