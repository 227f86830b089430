collective
--machine
dgx-a100-superpod
--op
all-reduce
--gpus
64
--sizes
8:4 GiB
