calibrate
import
tests/calibration/fixture-memory.json
tests/errors/raw-a100.json
--gpu
A100-SXM4-80GB
--out
tests/errors/never-written.yaml
