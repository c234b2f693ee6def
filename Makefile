# The README's two commands: `make train` (the main job) and `make test` (the whole suite).
PYTHON ?= python3
MODEL ?= cnn
EPOCHS ?= 3
export HYPOTHESIS_PROFILE ?= ci

.PHONY: install train test

install:
	$(PYTHON) -m pip install -q -e ".[dev]"
	# PyTorch is a test-time reference only; without it those comparisons skip.
	$(PYTHON) -m pip install -q "torch==2.13.0" || echo "PyTorch not installed: comparisons with PyTorch will be skipped"

train:
	$(PYTHON) -m pip install -q -e ".[data,plot,progress]"
	$(PYTHON) -m tinydl train --model $(MODEL) --epochs $(EPOCHS)

test: install
	# pytest exits 5 when it collects no test (e.g. a -k filter that matches nothing): say so
	# and do not count it as a failure.
	$(PYTHON) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; rc=0; fi; \
	echo "Numba kernel tests again as plain Python (NUMBA_DISABLE_JIT=1), so their bodies run:"; \
	NUMBA_DISABLE_JIT=1 $(PYTHON) -m pytest -q -p no:cacheprovider tests/backend/test_kernels_numba.py \
	  tests/backend/test_kernels_winograd.py tests/backend/test_kernels_conv_images.py \
	  tests/backend/test_kernels_bn_relu.py tests/backend/test_kernels_relu.py \
	  tests/backend/test_kernels_dropout.py; \
	rc2=$$?; if [ $$rc2 -eq 5 ]; then rc2=0; fi; \
	if [ $$rc -eq 0 ]; then rc=$$rc2; fi; exit $$rc
