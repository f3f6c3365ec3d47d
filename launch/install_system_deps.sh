#!/bin/sh
# Tools the test suite uses: espeak-ng (speech) and ffmpeg (containers) to make its own audio, and
# Chromium (headless) to look at the run report. Installs them with apt-get when missing and allowed;
# otherwise says what is missing (tests needing them skip with a reason).
set -e
missing=""
for tool in espeak-ng ffmpeg chromium; do
  command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing:$missing (install them with your package manager; tests needing them will skip)" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "missing:$missing and no root to apt-get them; tests needing them will skip" >&2
    exit 0
  fi
fi
echo "installing:$missing"
$SUDO apt-get update -qq
for package in $missing; do
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$package" >/dev/null \
    || echo "could not install $package; tests needing it will skip" >&2
done
