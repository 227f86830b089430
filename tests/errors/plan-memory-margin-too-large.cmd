plan
scenarios/megatron-145.6b-dgx-a100.yaml
--memory-margin
100%
