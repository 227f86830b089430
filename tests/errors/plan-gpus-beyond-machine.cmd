plan
scenarios/megatron-145.6b-dgx-a100.yaml
--gpus
256:20000
