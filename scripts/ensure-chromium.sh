#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests when it can (root and apt). Otherwise it says
# why and returns 0, and the browser suites skip themselves with that reason; but under CI=true
# (CI runs `bash .ci/run` with it) a browser it cannot install is an error, and the browser
# suites fail rather than skip, so CI cannot stay green with them unrun.
set -uo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
cannot() {
  if [ "${CI:-}" = true ]; then
    echo "==> $1, and CI=true forbids skipping the browser tests" >&2
    exit 1
  fi
  echo "==> $1: the browser tests will be skipped" >&2
  exit 0
}
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  cannot "Chromium is not installed and cannot be (needs root and apt-get)"
fi
echo "==> installing Debian's chromium for the browser tests (once)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; then
  cannot "installing chromium failed"
fi
if [ ! -x /usr/bin/chromium ]; then
  cannot "apt-get installed no /usr/bin/chromium"
fi
exit 0
