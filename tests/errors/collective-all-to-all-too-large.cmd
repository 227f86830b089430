collective
--machine
dgx-a100-superpod
--op
all-to-all
--gpus
2048
