regress
--baseline
/nonexistent-odyssey-folder/regress-no-such-baseline.yaml
scenarios/mixtral-8x7b-dgx-h100.yaml
