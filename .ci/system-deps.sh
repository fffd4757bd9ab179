#!/usr/bin/env bash
# Install the system packages the tests use, when we may (root); otherwise say what is missing.
set -euo pipefail
need=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
# The demo report's screenshot test renders it offline in headless Chromium.
command -v chromium-headless-shell >/dev/null || [ -x /usr/lib/chromium/headless_shell ] || need+=(chromium-headless-shell)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  echo "installing system packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "missing system packages: ${need[*]} (install them with apt-get as root); tests needing them will skip"
fi
