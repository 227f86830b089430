collective
--machine
dgx-a100-superpd
--op
all-reduce
--gpus
8
