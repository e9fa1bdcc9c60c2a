# The two commands: `make test` (every test) and `make demo` (see README).
PYTHON ?= python3
# Heavy dependencies (torch, diffusers, ...) live in one virtualenv per machine, keyed by the
# requirement list and shared by every checkout; each checkout's .venv adds only the project.
# FLUXLORA_CACHE moves it (with the servers binaries.py builds); the first-run benchmark
# points it at an empty folder.
FLUXLORA_CACHE ?= $(HOME)/.cache/flux-lora-operator
CACHE := $(FLUXLORA_CACHE)
export FLUXLORA_CACHE
EXTRAS := operator trainer dev
REQUIREMENTS = $(PYTHON) -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\\n'.join(p['dependencies'] + [r for e in '$(EXTRAS)'.split() for r in p['optional-dependencies'][e]]))"
# The images' pinned versions: the tests install exactly these (`make lock` renews them).
LOCKS := operator/requirements.lock trainer-image/requirements.lock
DEPS_KEY := $(shell $(PYTHON) -c "import tomllib, hashlib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; locks = [open(f).read() for f in '$(LOCKS)'.split()]; print(hashlib.sha256(repr((p['dependencies'], p['optional-dependencies'], locks)).encode()).hexdigest()[:12])")
DEPS := $(CACHE)/deps-$(DEPS_KEY)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(DEPS_KEY)
CRD_DIRS := crds charts/flux-lora-operator/crds

.PHONY: help install deps-under-lock bytecode bytecode-under-lock lock servers host-packages browser-packages images tiny-model test lint format crds generate run demo clean

help:
	@echo "make demo    train a tiny LoRA end to end on a local control plane (DEMO_FLAGS=--keep)"
	@echo "make test    lint and run every test"
	@echo "make crds    regenerate the CRDs and the generated docs from the models"
	@echo "make run     run the operator against the current kubeconfig"
	@echo "make format  format and auto-fix lint"

# uv downloads in parallel: a cold install takes about a tenth of pip's time.
UV := uv>=0.9,<1
UV_PIP = UV_CACHE_DIR=$(CACHE)/uv $(DEPS)/bin/uv pip install

# Keyed by the requirement list, so it never goes stale; built under a lock because checkouts
# share it, marked complete only at the end, and older ones (several GB each) removed then.
$(DEPS)/.complete:
	@mkdir -p $(CACHE)
	@flock $(CACHE)/deps.lock $(MAKE) --no-print-directory deps-under-lock

deps-under-lock:
	@test -e $(DEPS)/.complete || { \
		echo "first run on this machine: installing the Python dependencies (torch with its CUDA" && \
		echo "libraries, about 6 GB, a minute or two) into $(DEPS), while Go compiles the servers" && \
		rm -rf $(DEPS) && $(PYTHON) -m venv $(DEPS) && \
		$(REQUIREMENTS) > $(DEPS)/requirements.txt && \
		$(DEPS)/bin/python -m pip install --quiet "$(UV)" && \
		$(UV_PIP) --python $(DEPS)/bin/python -r $(DEPS)/requirements.txt $(addprefix -c ,$(LOCKS)) && \
		touch $(DEPS)/.complete && \
		find $(CACHE) -maxdepth 1 -name "deps-*" ! -name "deps-$(DEPS_KEY)" -exec rm -rf {} + ; }

# The dependencies' bytecode (15,000 files, about 40 CPU-seconds), compiled once per machine for
# the tests, which start dozens of Python processes that import torch, and where
# PYTHONDONTWRITEBYTECODE is set no process keeps what it compiles. A first `make demo` goes
# without: its own processes import little, and the servers compile meanwhile on the same cores.
# A file no Python 3.11 can parse (some packages ship such test data) is left to the importer.
BYTECODE := $(DEPS)/.bytecode
bytecode: $(BYTECODE)
$(BYTECODE): $(DEPS)/.complete
	@flock $(CACHE)/deps.lock $(MAKE) --no-print-directory bytecode-under-lock

bytecode-under-lock:
	@test -e $(BYTECODE) || { \
		echo "compiling the Python dependencies to bytecode for the tests, once per machine" \
			"(half a minute) ..." && \
		{ $(DEPS)/bin/python -m compileall -q -q -j 0 \
			"$$($(DEPS)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")" \
			|| true; } && \
		touch $(BYTECODE) ; }

# A new package (or entry point) needs the editable install made again.
$(STAMP): $(DEPS)/.complete pyproject.toml $(wildcard operator/*/__init__.py trainer-image/*/__init__.py tests/fluxlora_*/__init__.py)
	@echo "installing the project into $(VENV) (editable, over the shared dependencies)"
	@rm -rf $(VENV)
	@$(PYTHON) -m venv --without-pip $(VENV)
	@$(DEPS)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" \
		> "$$($(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/fluxlora-deps.pth"
	@$(UV_PIP) --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

install: $(STAMP)

# Newest versions within pyproject.toml's ranges, resolved once for all extras so that both
# images agree on what they share, then cut to each image's extra.
UV_COMPILE = UV_CACHE_DIR=$(CACHE)/uv $(DEPS)/bin/uv pip compile --quiet --no-header \
	--no-annotate --python-version 3.11 --python-platform x86_64-manylinux_2_28
lock: $(DEPS)/.complete
	@$(REQUIREMENTS) > $(CACHE)/everything.in
	@$(UV_COMPILE) --upgrade $(CACHE)/everything.in -o $(CACHE)/everything.lock
	@for extra in operator trainer; do \
		lock=$$(echo "$(LOCKS)" | tr ' ' '\n' | grep "^$$extra"); \
		{ echo "# Every package the $$extra image installs, pinned: \`make test\` installs the same versions."; \
		  echo "# Regenerate with \`make lock\`."; \
		  $(UV_COMPILE) pyproject.toml --extra $$extra -c $(CACHE)/everything.lock; } > $$lock; \
		echo "wrote $$lock"; done

crds generate: $(STAMP)
	$(BIN)/fluxlora-crd $(CRD_DIRS) --reference docs/api-reference.md
	$(BIN)/python -m fluxlora_operator.settings > docs/operator.md

# mypy's cache is the machine's, beside the dependencies it describes: it is keyed by each
# module's contents, not its path, so a new checkout (a CI clone) checks in a second instead of
# 45 CPU-seconds of silence. One mypy at a time writes it.
lint: $(STAMP)
	$(DEPS)/bin/ruff check .
	$(DEPS)/bin/ruff format --check .
	MYPY_CACHE_DIR=$(DEPS)/mypy-cache flock $(DEPS)/.mypy.lock $(DEPS)/bin/mypy

# The servers the tests run, built once per machine (minutes when cold, instant after). The
# build needs only Go and the standard library, so on a fresh machine it runs beside the Python
# install (CPU beside network and disk) instead of after it. The demo needs all but Kueue.
SERVERS_FOR ?= test
servers:
	PYTHONPATH=tests $(PYTHON) -m fluxlora_localcluster.binaries $(SERVERS_FOR)

# What the real node and the image builds run, from Debian's packages (a fresh machine lacks
# them; installing needs root, as running a node does); and the browser the web page's tests
# drive (`make test` only).
HOST_PACKAGES := runc containernetworking-plugins buildah mmdebstrap iptables conntrack
BROWSER_PACKAGES := chromium chromium-driver
define apt_install
	@missing="$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done)"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages $(2):" $$missing; \
		apt-get install -y -qq --no-install-recommends $$missing >/dev/null \
		|| { apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; } \
		|| { echo "could not install" $$missing "(as root: apt-get install $$missing)"; exit 1; }; \
	fi
endef
host-packages:
	$(call apt_install,$(HOST_PACKAGES),for the node and the image builds)

browser-packages:
	$(call apt_install,$(BROWSER_PACKAGES),for the web page's browser tests)

tiny-model: $(STAMP)
	@$(BIN)/python -m fluxlora_localcluster.tiny_model_cache

# Both images from their Dockerfiles (buildah, on a local Debian base): only changed layers
# rebuild, so a change to our code takes seconds.
images: $(STAMP) host-packages
	$(BIN)/python -m fluxlora_localcluster.images

# One worker more than the machine has cores; each has its own control plane, node and MinIO
# (session fixtures), and takes the next test when it is free, so the long end-to-end tests
# spread out. The end-to-end tests wait on the cluster part of the time (its one-second
# relists and batching, back-offs, a negative test's quiet seconds): with a worker per core a
# 2-core machine stood idle 17–18 % of the run, with one more 5–8 %.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
test:
	$(MAKE) --no-print-directory -j3 lint servers images browser-packages bytecode
	$(BIN)/python -m pytest --numprocesses $(TEST_WORKERS) --dist worksteal --durations 15

format: $(STAMP)
	$(DEPS)/bin/ruff format .
	$(DEPS)/bin/ruff check --fix .

run: $(STAMP)
	$(BIN)/fluxlora-operator

# The demo's tiny model is written once per machine, while the servers compile.
demo:
	$(MAKE) --no-print-directory -j3 $(STAMP) servers images tiny-model SERVERS_FOR=demo
	$(BIN)/python examples/local_demo.py --images-built $(DEMO_FLAGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
