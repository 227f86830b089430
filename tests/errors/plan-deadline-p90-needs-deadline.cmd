plan
scenarios/llama3-70b-dgx-h100.yaml
--deadline-p90
