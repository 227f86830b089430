sweep
scenarios/sweeps/gpt3-a100-network.yaml
--merge
tests/errors/no-such-shard.csv
--out
/tmp/odyssey-merge-never-written.csv
