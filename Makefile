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
	$(BIN)/vla-data synth --format galaxea --episodes 4 --seed 0 --out $(WORK)/raw/galaxea
	$(BIN)/vla-data synth --format robotwin --episodes 4 --seed 0 --out $(WORK)/raw/robotwin
	touch $@

demo: venv $(WORK)/raw/.generated
	$(BIN)/vla-data ingest $(WORK)/raw $(WORK)/out
	$(BIN)/vla-data annotate $(WORK)/out  # the vLLM backend when VLA_VLM_ENDPOINT is set, else the rules backend
	$(BIN)/vla-data export $(WORK)/out $(WORK)/lerobot
	$(BIN)/vla-data validate $(WORK)/lerobot/aloha
	$(BIN)/vla-data norm-stats $(WORK)/lerobot/aloha --out $(WORK)/lerobot/aloha/norm_stats.json --subtract-state arm.position
	$(BIN)/vla-data norm-stats $(WORK)/lerobot/agibot_g1 --out $(WORK)/lerobot/agibot_g1/norm_stats.json --subtract-state arm.position
	$(BIN)/vla-data norm-stats $(WORK)/lerobot/galaxea_r1_pro --out $(WORK)/lerobot/galaxea_r1_pro/norm_stats.json --subtract-state arm.position
	$(BIN)/vla-data norm-stats $(WORK)/lerobot/robotwin_aloha_agilex --out $(WORK)/lerobot/robotwin_aloha_agilex/norm_stats.json --subtract-state arm.position
	$(BIN)/vla-data stats report $(WORK)/out
	@echo "LeRobot v3.0 datasets: $(WORK)/lerobot/{aloha,agibot_g1,galaxea_r1_pro,robotwin_aloha_agilex} (LingBot robot config in meta/lingbot_robot_config.yaml)"
	@echo "Norm stats: $(WORK)/lerobot/<robot>/norm_stats.json"

test: venv
	$(BIN)/pytest

clean:
	rm -rf $(VENV) work
