calibrate
import
tests/errors/raw-a100.json
--gpu
H100-SXM5-80GB
--out
tests/errors/never-written.yaml
