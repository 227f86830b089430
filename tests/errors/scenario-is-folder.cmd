validate
tests/errors
