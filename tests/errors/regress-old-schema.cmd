regress
--baseline
tests/errors/regress-old-schema.yaml
--update
scenarios/mixtral-8x7b-dgx-h100.yaml
