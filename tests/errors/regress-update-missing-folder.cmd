regress
--update
--baseline
/nonexistent-odyssey-folder/baseline.yaml
scenarios/mixtral-8x7b-dgx-h100.yaml
