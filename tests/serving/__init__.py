# A package, so that pytest imports tests/serving/conftest.py as `serving.conftest`: a second top-level
# `conftest` module would replace tests/conftest.py in sys.modules, and `from conftest import REPO` would break.
