sweep
tests/errors/sweep-unknown-key.yaml
