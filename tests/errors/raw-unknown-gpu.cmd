calibrate
import
tests/calibration/fixture-memory.json
--out
tests/errors/never-written.yaml
