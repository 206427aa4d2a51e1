#!/usr/bin/env bash
# deps.sh - install what the tests (and, with "bench", the benchmarks) need.
#
# Idempotent: if every needed binary is already present it installs nothing
# and never runs apt-get. Otherwise it runs "apt-get update" once and
# installs the missing Debian packages, then "go mod download".
#
#   scripts/deps.sh          peers for the e2e tests
#   scripts/deps.sh bench    the same, plus Kamailio and rtpengine (benchmark anchors)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# binary -> Debian package
declare -A PKG=(
  [sipp]=sip-tester
  [baresip]=baresip-core
  [svmap]=sipvicious
  [svwar]=sipvicious
  [svcrack]=sipvicious
  [socat]=socat
  [sipsak]=sipsak
  [tshark]=tshark
  [openssl]=openssl
  [ss]=iproute2
  [pgrep]=procps
  [timeout]=coreutils
  [awk]=gawk
  [prosody]=prosody
  [prosodyctl]=prosody
  [ffmpeg]=ffmpeg
  [ffprobe]=ffmpeg
  [pkg-config]=pkg-config
  [ii]=ii
  [protoc]=protobuf-compiler
  [grpc_python_plugin]=protobuf-compiler-grpc
  [chromium]=chromium
  [node]=nodejs
  [npm]=npm
)
WANT=(sipp baresip svmap svwar svcrack socat sipsak tshark openssl ss pgrep timeout awk prosody prosodyctl)
# transcode: ffmpeg decodes what the transcoder sends (tests) and is the benchmark anchor.
WANT+=(ffmpeg ffprobe pkg-config)
# webrtc: headless Chromium plays the browser; npm builds the softphone page.
WANT+=(chromium node npm)
# plugins: ii is the IRC client of the plugin e2e test; protoc and the gRPC
# Python plugin regenerate the contract (make proto).
WANT+=(ii protoc grpc_python_plugin)
# Files a binary check would miss: baresip's headless modules.
declare -A FILE_PKG=(
  [/usr/lib/baresip/modules/ctrl_tcp.so]=baresip-core
  [/usr/lib/baresip/modules/ausine.so]=baresip-core
  [/usr/lib/baresip/modules/aubridge.so]=baresip-core
  [/usr/lib/baresip/modules/presence.so]=baresip-core # e2e interworking: SUBSCRIBE/NOTIFY
  # The IRC example plugin (plugins/irc) runs on Debian's Python modules.
  [/usr/lib/python3/dist-packages/grpc/__init__.py]=python3-grpcio
  [/usr/lib/python3/dist-packages/google/protobuf/__init__.py]=python3-protobuf
  [/usr/lib/python3/dist-packages/cryptography/__init__.py]=python3-cryptography
  # transcode (cgo): libvpx for VP8, openh264 for H.264, libyuv to scale.
  [/usr/include/vpx/vp8cx.h]=libvpx-dev
  [/usr/include/wels/codec_api.h]=libopenh264-dev
  [/usr/include/libyuv/scale.h]=libyuv-dev
)

for group in "$@"; do
  case $group in
    bench)
      PKG[kamailio]=kamailio
      PKG[kamcmd]=kamailio
      PKG[rtpengine]=rtpengine-daemon
      WANT+=(kamailio kamcmd rtpengine) ;;
    test) ;;
    *) echo "deps.sh: unknown group '$group' (known: test, bench)" >&2; exit 2 ;;
  esac
done

# kamailio lives in /usr/sbin, which a non-root PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

missing=()
for bin in "${WANT[@]}"; do
  command -v "$bin" >/dev/null 2>&1 || missing+=("${PKG[$bin]}")
done
for f in "${!FILE_PKG[@]}"; do
  [[ -e $f ]] || missing+=("${FILE_PKG[$f]}")
done
# unique
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u | sed '/^$/d')

if (( ${#missing[@]} == 0 )); then
  echo "deps: all test peers present (${WANT[*]})"
else
  SUDO=()
  if (( EUID != 0 )); then
    command -v sudo >/dev/null || { echo "deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    SUDO=(sudo)
  fi
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if [[ " ${missing[*]} " == *" tshark "* ]]; then
    # Do not let wireshark-common ask whether non-root users may capture.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | "${SUDO[@]}" debconf-set-selections
  fi
  "${SUDO[@]}" apt-get update -q
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  for bin in "${WANT[@]}"; do
    command -v "$bin" >/dev/null 2>&1 || { echo "deps: $bin still missing after install" >&2; exit 1; }
  done
  echo "deps: installed ${missing[*]}"
fi

if command -v go >/dev/null; then
  go mod download
  echo "deps: go modules downloaded"
else
  echo "deps: go not in PATH (expected /usr/local/go/bin)" >&2
  exit 1
fi
