# The two commands of the quick start: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[mujoco,minigrid,atari,box2d,popgym,minatar,robotics,test,bench,ray,video,export]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rl-agents train --env CartPole-v1 --agents ppo+rnd --steps 100000 --stop-at-return 475

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -n 2 --dist loadgroup --durations=15

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) runs
