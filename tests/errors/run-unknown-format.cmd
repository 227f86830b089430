run
scenarios/mixtral-8x7b-dgx-h100.yaml
--format
html
