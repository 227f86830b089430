calibrate
import
tests/errors/raw-a100.json
--scenario
scenarios/llama3-70b-dgx-h100.yaml
--out
tests/errors/never-written.yaml
