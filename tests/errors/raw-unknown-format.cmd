calibrate
import
tests/errors/raw-unknown-format.json
--gpu
H100-SXM5-80GB
--out
tests/errors/never-written.yaml
