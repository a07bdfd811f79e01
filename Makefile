# Two commands: `make demo` and `make test`. Both create .venv from the pinned pyproject.toml first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
WORK ?= work/demo
export OMP_NUM_THREADS ?= 1

.PHONY: venv demo test clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==25.3
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Sample recordings are generated once (deterministic); a rerun of ingest resumes and skips finished episodes.
$(WORK)/raw/.generated: | venv
	$(BIN)/vla-data synth --format aloha --episodes 6 --seed 0 --out $(WORK)/raw/aloha --faults nan_qpos
	$(BIN)/vla-data synth --format agibot --episodes 6 --seed 0 --out $(WORK)/raw/agibot --faults corrupt_mp4
	touch $@

demo: venv $(WORK)/raw/.generated
	$(BIN)/vla-data ingest $(WORK)/raw $(WORK)/out
	$(BIN)/vla-data sql $(WORK)/out "SELECT robot, count(*) AS episodes, round(sum(duration_s)/3600, 4) AS hours FROM episodes GROUP BY robot ORDER BY robot"

test: venv
	$(BIN)/pytest

clean:
	rm -rf $(VENV) work
