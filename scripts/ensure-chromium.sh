#!/usr/bin/env bash
# Installs Debian's Chromium for the browser test when it can (root and apt); otherwise says why
# and returns 0, and the browser test skips itself with that reason.
set -uo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "==> Chromium is not installed and cannot be (needs root and apt-get): the browser test will be skipped" >&2
  exit 0
fi
echo "==> installing Debian's chromium for the browser test (once)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; then
  echo "==> installing chromium failed: the browser test will be skipped" >&2
fi
exit 0
