plan
scenarios/megatron-145.6b-dgx-a100.yaml
--gpus
1024:512
