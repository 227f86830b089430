collective
--machine
dgx-a100-superpod
--op
all-redcue
--gpus
64
