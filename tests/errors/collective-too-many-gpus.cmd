collective
--machine
dgx-a100-superpod
--op
all-reduce
--gpus
20000
