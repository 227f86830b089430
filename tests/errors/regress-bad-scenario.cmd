regress
--update
--baseline
tests/regress/baseline.yaml
tests/errors/unknown-key.yaml
