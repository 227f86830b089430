regress
--baseline
tests/errors/regress-unknown-metric.yaml
scenarios/mixtral-8x7b-dgx-h100.yaml
