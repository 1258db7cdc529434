# The two README commands:
#   make demo   set up .venv, build, export EfficientNet-Lite0, explain coffee.png -> artifacts/
#   make test   set up .venv, build (with and without CUDA), run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARTIFACTS ?= artifacts
PHOTO = $(shell $(PY) -c "import skimage, os; print(os.path.join(os.path.dirname(skimage.__file__), 'data', 'coffee.png'))")

.PHONY: demo test install check-no-cuda bench bench-peers quality quality-refinements clean

# The last pip line installs the peers the tests compare our methods with (tests/peers)
# without their declared dependencies: those pull torchvision (CUDA builds on PyPI, which
# fail against CPU torch; tests/peers stands in for the names they import), numpy 1.x and
# openvino-dev. openvino 2025.4 is the last with openvino.runtime, which openvino-xai imports.
$(VENV)/.installed: Makefile pyproject.toml CMakeLists.txt $(wildcard csrc/*.h csrc/*.cpp csrc/*/*.cpp csrc/*/*.cu csrc/*/*.h) $(shell find onnx_sise export -name '*.py')
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet ".[export,test,serve,ray]" "pybind11>=2.12,<4" "cmake>=3.24" ninja
	$(PY) -m pip install --quiet --no-deps "grad-cam==1.5.7" "openvino==2025.4.1" "openvino-xai==1.1.0"
	touch $@

install: $(VENV)/.installed

demo: install
	mkdir -p $(ARTIFACTS)
	$(PY) -m onnx_sise export --zoo efficientnet-lite0 -o $(ARTIFACTS)/efficientnet-lite0.sise.onnx
	cp $(PHOTO) $(ARTIFACTS)/coffee.png
	$(PY) -m onnx_sise explain $(ARTIFACTS)/efficientnet-lite0.sise.onnx $(ARTIFACTS)/coffee.png
	@echo "overlay: $(ARTIFACTS)/coffee.sise.png   raw map: $(ARTIFACTS)/coffee.sise.npy"

# The compiled core built with ONNX_SISE_CUDA=OFF, tested against the NumPy references.
check-no-cuda: install
	rm -rf build/no-cuda
	$(VENV)/bin/cmake -S . -B build/no-cuda -G Ninja -DONNX_SISE_CUDA=OFF -DCMAKE_BUILD_TYPE=Release \
		-DPython_EXECUTABLE=$(abspath $(PY)) -Dpybind11_DIR=$$($(PY) -m pybind11 --cmakedir) > build/no-cuda.log
	$(VENV)/bin/cmake --build build/no-cuda >> build/no-cuda.log
	mkdir -p build/no-cuda/site/onnx_sise
	cp -r onnx_sise/. build/no-cuda/site/onnx_sise/ && cp build/no-cuda/_core*.so build/no-cuda/site/onnx_sise/
	cd build/no-cuda/site && $(abspath $(PY)) -c "import onnx_sise._core as c; assert not c.built_with_cuda; print('no-CUDA core imported from', c.__file__)"
	PYTHONPATH=build/no-cuda/site $(VENV)/bin/pytest -q -p no:cacheprovider tests/onnx_sise/test_kernels.py

test: install check-no-cuda
	cd build && $(abspath $(PY)) -c "import onnx_sise._core as c; print('installed core', c.__file__, 'CUDA kernels built:', c.built_with_cuda)"
	$(VENV)/bin/pytest --durations=10

bench: install
	$(PY) -m pip install --quiet ".[bench]"
	$(PY) benchmarks/bench_explain.py
	$(PY) benchmarks/bench_levers.py
	$(PY) benchmarks/bench_preparation.py
	$(PY) benchmarks/ada_vs_sise.py
	$(PY) benchmarks/sanity_checks.py --labels
	$(PY) benchmarks/evaluate_refinements.py

# Ours against pytorch-grad-cam, Captum and OpenVINO XAI, side by side -> RESULTS.md. Captum is
# only for this benchmark (--no-deps: torch stays the CPU build); the other peers come with install.
bench-peers: install
	$(PY) -m pip install --quiet --no-deps "captum==0.9.0"
	$(PY) benchmarks/bench_peers.py --rise-5000

# Are our maps better? Every method x metric on the 34 photos of benchmarks/photo_set.py
# with intervals, the fusion study, the sanity checks and the stability study -> RESULTS.md
# (some 5 hours on 2 cores). quality-refinements adds SIGCAM and UCAG on every method
# (about a day on 2 cores: UCAG explains 36 patches), kept photo by photo in quality.py's
# --work, then tabulates every method in one table.
QUALITY_MODEL := build/lite0.sise.onnx

$(QUALITY_MODEL): $(VENV)/.installed
	mkdir -p build
	$(PY) -m onnx_sise export --zoo efficientnet-lite0 -o $@

quality: $(QUALITY_MODEL)
	$(PY) -m pip install --quiet ".[bench]"
	$(PY) benchmarks/quality.py --model $(QUALITY_MODEL)
	$(PY) benchmarks/sanity_checks.py --model $(QUALITY_MODEL)
	$(PY) benchmarks/stability.py --model $(QUALITY_MODEL)

quality-refinements: $(QUALITY_MODEL)
	$(PY) -m pip install --quiet ".[bench]"
	$(PY) benchmarks/quality.py --model $(QUALITY_MODEL) --parts methods --methods refinements
	$(PY) benchmarks/quality.py --model $(QUALITY_MODEL) --cached-only --methods all

clean:
	rm -rf build $(VENV) $(ARTIFACTS)
