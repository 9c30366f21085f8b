#!/usr/bin/env bash
# Install the Debian packages keystep needs, only those missing. Idempotent; needs root.
set -euo pipefail
packages=(
  xvfb xauth xdotool openbox x11-utils x11-xserver-utils      # virtual display, window manager, input driving
  trayer xterm zenity                                           # a tray, a terminal and a GTK password box for e2e tests
  at-spi2-core dbus libatk-bridge2.0-0                          # the accessibility bus that reports password fields
  chromium                                                      # a browser whose password fields that bus reports (e2e test)
  tesseract-ocr tesseract-ocr-eng libtesseract-dev libleptonica-dev pkg-config  # on-device OCR
  fonts-dejavu-core fonts-liberation fonts-noto-core fonts-noto-mono  # rendered screens of the redaction corpus
  postgresql postgresql-client                                  # the collector's server database
  python3-venv python3-dev gcc
  strace                                                        # proves OCR writes nothing to disk
  procps                                                        # pkill: a test ends the X server under a recorder
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing system packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "keystep: error: missing system packages (${missing[*]}) and not root; install them with apt-get" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
