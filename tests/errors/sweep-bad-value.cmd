sweep
tests/errors/sweep-bad-value.yaml
