# SeismicTorch. `make demo` and `make test` need only python3 (>= 3.11) and make:
# they create .venv and install what they need on first use.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: help venv demo replay test lint bench clean bundle deploy rollback releases

help:
	@echo "make demo   - run the whole chain on physics-based synthetic data (outputs in runs/demo/;"
	@echo "              its Green's function bank is built once, about 4 CPU-minutes)"
	@echo "make replay - replay-test recorded files into the node and score it (runs/replay/);"
	@echo "              RECORDS=path CATALOG=csv INVENTORY=xml UNITS=u MODEL=onnx to use your own"
	@echo "make bundle - node install bundle dist/seismictorch-node-<version>-<arch>.tar.gz;"
	@echo "              CHOSEN=chosen_model.json (or MODEL=file) PLATFORM=manylinux_2_17_aarch64|host PYVER=3.11"
	@echo "              VERSION=name (default: commit + model + content hashes) DIST=folder"
	@echo "make deploy - HOST=user@node (ssh) or DEPLOY_ROOT=/mnt/rootfs (SD card); BUNDLE=file (default newest)"
	@echo "make rollback / make releases - HOST=... or DEPLOY_ROOT=..."
	@echo "make test   - run the test suite"
	@echo "make bench  - benchmarks against same-run baselines (runs/bench/bench.json)"
	@echo "make lint   - ruff, then the structure checks (import cycles, layering, function length)"
	@echo "make clean  - remove runs/ and caches (keeps .venv)"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
	  echo "python3 -m venv failed: installing the Debian package python3-venv"; \
	  rm -rf $(VENV); \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq python3-venv && \
	  $(PYTHON) -m venv $(VENV); } || { \
	  echo "cannot create $(VENV): install python3-venv (Debian/Ubuntu) and retry"; exit 1; }
	-$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[edge,host,dev,tflite,convert,network,scan]'
	# The network centre's associator (docs/network-center.md). PyOcto declares numpy<2 on Python
	# 3.11 but runs on numpy 2, which the host extra's onnx needs: installed without its pins.
	$(PY) -m pip install --quiet --no-deps 'pyocto>=0.2' 'pyproj>=3.6'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m tools demo --out runs/demo

# Shipped real-shaped fixtures (tools/fixtures/records: 1/2/3 components, 4 ms offset, a gap,
# counts + StationXML, a 1995 record, lower-case names; in git, .gitignore lets them in) unless
# RECORDS is given. Regenerate them with: python tests/fixtures_records.py tools/fixtures/records
RECORDS   ?= tools/fixtures/records
CATALOG   ?= $(if $(filter tools/fixtures/records,$(RECORDS)),tools/fixtures/records/catalog.csv,)
MODEL     ?= runs/demo/model/earthquake_cnn_int16_sim.onnx
REPLAY_OUT ?= runs/replay
replay: $(STAMP)
	@test -f $(MODEL) || $(PY) -m tools demo --out runs/demo
	$(PY) -m tools replay-test $(RECORDS) --model $(MODEL) --out $(REPLAY_OUT) \
	  $(if $(CATALOG),--catalog $(CATALOG)) $(if $(INVENTORY),--inventory $(INVENTORY)) \
	  $(if $(UNITS),--units $(UNITS))

# $(call apt_install,PACKAGES,WHY[,APT OPTIONS]): the Debian packages a test starts for real,
# installed with sudo unless root; or one line saying how to install them, and a failed make.
define apt_install
@echo "installing the Debian package(s) $(1) ($(2))"
@SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $(3) $(1) || { \
  echo "cannot install $(1): install it (apt-get install $(1)) and retry"; exit 1; }
endef

# The deploy tests start a real OpenSSH server (tests/test_deploy.py).
SSHD := /usr/sbin/sshd
$(SSHD):
	$(call apt_install,openssh-server,tests/test_deploy.py starts a real sshd)

# tests/test_bundle_qemu.py runs Debian's arm64 Python under qemu-user (no binfmt_misc needed).
QEMU_USER := /usr/bin/qemu-aarch64-static
$(QEMU_USER):
	$(call apt_install,qemu-user-static,tests/test_bundle_qemu.py runs an arm64 Python,--no-install-recommends)

# tests/test_firmware.py builds the board encoder (firmware/) with the host's gcc, cross-compiles it
# for a Cortex-M0+, and builds the Arduino example against Debian's Arduino AVR core.
HOST_GCC := /usr/bin/gcc
$(HOST_GCC):
	$(call apt_install,gcc,tests/test_firmware.py compiles the C frame encoder)

ARM_GCC := /usr/bin/arm-none-eabi-gcc
$(ARM_GCC):
	$(call apt_install,gcc-arm-none-eabi libnewlib-arm-none-eabi,tests/test_firmware.py cross-compiles firmware/ for a Cortex-M0+,--no-install-recommends)

ARDUINO_AVR_CORE := /usr/share/arduino/hardware/arduino/avr/cores/arduino/Arduino.h
$(ARDUINO_AVR_CORE):
	$(call apt_install,arduino-core-avr,tests/test_firmware.py builds the Arduino example,--no-install-recommends)

# tests/test_mqtt.py starts a real Mosquitto broker on 127.0.0.1 (the node's MQTT output, docs/mqtt.md).
MOSQUITTO := /usr/sbin/mosquitto
$(MOSQUITTO):
	$(call apt_install,mosquitto,tests/test_mqtt.py starts a real MQTT broker,--no-install-recommends)

# tests/test_mqtt.py makes a throwaway CA and broker certificate with openssl (the mqtts:// test).
OPENSSL := /usr/bin/openssl
$(OPENSSL):
	$(call apt_install,openssl,tests/test_mqtt.py makes throwaway TLS certificates,--no-install-recommends)

# tests/test_web.py loads the node's status page in headless Chromium through its WebDriver.
CHROMEDRIVER := /usr/bin/chromedriver
$(CHROMEDRIVER):
	$(call apt_install,chromium chromium-driver,tests/test_web.py drives a headless browser)

# Three test files at a time (pytest-xdist, a file's tests stay together with their module
# fixtures): most of the suite waits on node processes, ptys, sockets and brokers, so on 2
# cores the whole suite takes about 6 minutes this way against about 14 one file at a time.
# TEST_JOBS=0 runs it in this one process.
TEST_JOBS ?= 3
test: $(STAMP) | $(SSHD) $(QEMU_USER) $(HOST_GCC) $(ARM_GCC) $(ARDUINO_AVR_CORE) $(MOSQUITTO) $(OPENSSL) $(CHROMEDRIVER)
	$(PY) -m pytest -q $(if $(filter-out 0,$(TEST_JOBS)),-n $(TEST_JOBS) --dist loadfile)

# Node bundle and deploy (tools/deploy/bundle.py, tools/deploy/remote.py, deploy/install.py; docs/deploying.md).
CHOSEN   ?=
PLATFORM ?= manylinux_2_17_aarch64
PYVER    ?= 3.11
VERSION  ?=
DIST     ?= dist
BUNDLE   ?= $(shell ls -t $(DIST)/seismictorch-node-*.tar.gz 2>/dev/null | head -1)
NODE_AT   = $(if $(HOST),--host $(HOST),$(if $(DEPLOY_ROOT),--root $(DEPLOY_ROOT),))
bundle: $(STAMP)
	@test -n "$(CHOSEN)" || test -f $(MODEL) || $(PY) -m tools demo --out runs/demo
	$(PY) -m tools bundle $(if $(CHOSEN),--chosen $(CHOSEN),--model $(MODEL)) --platform $(PLATFORM) \
	  --python-version $(PYVER) $(if $(filter host,$(PLATFORM)),--wheels-from-env) --out $(DIST) \
	  $(if $(VERSION),--version $(VERSION))

deploy: $(STAMP)
	@test -n "$(NODE_AT)" || { echo "make deploy: give HOST=user@node or DEPLOY_ROOT=/mnt/rootfs"; exit 2; }
	@test -n "$(BUNDLE)" || { echo "make deploy: no bundle in $(DIST)/: run make bundle first"; exit 2; }
	$(PY) -m tools deploy $(BUNDLE) $(NODE_AT)

rollback releases: $(STAMP)
	@test -n "$(NODE_AT)" || { echo "make $@: give HOST=user@node or DEPLOY_ROOT=/mnt/rootfs"; exit 2; }
	$(PY) -m tools $@ $(NODE_AT)

bench: $(STAMP)
	$(PY) -m tools bench --out runs/bench

# ruff (PLR0915 among its rules), then tests/test_structure.py's checks: no import cycle inside a
# package, the packages' layering, no function over 80 lines. tests/test_structure.py runs both.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) tests/test_structure.py

clean:
	rm -rf runs .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -prune -exec rm -rf {} +
