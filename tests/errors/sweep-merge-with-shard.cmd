sweep
scenarios/sweeps/gpt3-a100-network.yaml
--merge
shard0.csv
--shard
0/2
