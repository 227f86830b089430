run
scenarios/gpt3-175b-azure-2020.yaml
--set
training.precision=fp8
