sweep
scenarios/sweeps/gpt3-a100-network.yaml
--shard
4/4
