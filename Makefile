# nfsbulk: the two commands of the contract are `make bench` and `make test`.
# `setup` does everything a fresh Debian 12 machine needs and is quick when
# nothing changed (stamps under .venv/).

PYTHON   ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV     := .venv
PY       := $(VENV)/bin/python
APT_PKGS := gcc make python3-dev python3-venv libnfs-dev libnfs-utils prometheus dbench \
            nfs-ganesha nfs-ganesha-vfs nfs-ganesha-mem rpcbind strace tshark tcpdump chromium
BENCH_ARGS ?=
# README and grafana/README fetch /metrics with curl (not in a minimal Debian)
APT_PKGS += curl

.PHONY: setup apt venv build test test-long bench clean

setup: apt venv build

# Install only what is missing; apt-get update only when something is.
apt:
	@missing=$$(for p in $(APT_PKGS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "setup: installing apt packages:" $$missing; \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    echo "wireshark-common wireshark-common/install-setuid boolean false" | $$SUDO debconf-set-selections; \
	    $$SUDO apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

venv: $(VENV)/.stamp-pip

$(VENV)/.stamp-pip: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel 'cython>=3.0,<4'
	$(PY) -m pip install -q --no-build-isolation -e '.[test,distributed,plot]'
	@touch $@

# Cython build in place; cythonize skips unchanged sources, so this is quick.
build: $(VENV)/.stamp-pip
	@$(PY) setup.py -q build_ext --inplace 2>&1 | grep -v '^\(running\|copying\)' || true
	@$(PY) -c 'import alloc._core, rpcsrv.xprt._pageio, rpcsrv.xprt._udpfast, loadgen.flood._flood'

# every test but the long ones (pyproject's addopts deselect the `long` marker)
test: setup
	$(PY) -m pytest -q -p no:cacheprovider tests

# only the long ones: the 60 s soak with a server restart and 16 clients churning files for 60 s
test-long: setup
	$(PY) -m pytest -q -p no:cacheprovider -m long tests

# The main job: the allocator microbenchmark, then rpcsrv under load with every
# strategy the server lists (both profiles; each round runs every strategy once
# per profile in a shuffled order), medians with 95 % CIs, and it ends with the
# verdict lines against single; about 10 minutes on this 2-core machine while
# other jobs share it (load average 40-57), less when it is quiet.
bench: setup
	@mkdir -p results
	$(PY) -m alloc.bench --rounds 500 --json results/alloc-bench.json
	$(PY) -m loadgen bench --rounds 4 --time 5 --warmup 2 --clients 4 \
	    --json results/bench.json --plot results/bench.png $(BENCH_ARGS)

clean:
	rm -rf build results alloc/*.so alloc/*.c rpcsrv/xprt/*.so rpcsrv/xprt/*.c rpcsrv/fast/*.so rpcsrv/fast/*.c \
	    loadgen/flood/*.so loadgen/flood/_flood.c
