regress
--baseline
tests/errors/regress-missing-scenario.yaml
--update
scenarios/mixtral-8x7b-dgx-h100.yaml
