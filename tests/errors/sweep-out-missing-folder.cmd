sweep
scenarios/sweeps/gpt3-a100-network.yaml
--out
/nonexistent-odyssey-folder/rows.csv
