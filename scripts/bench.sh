#!/usr/bin/env bash
# bench.sh - what `make bench` runs: SIP call-rate, CPU and memory figures of
# ucgate next to sipp direct (and Kamailio, when installed), then the Go
# benchmarks of the repository summarized by their medians.
#
#   1. builds bin/ucgate (or uses $UCGATE_BIN) and starts it with a generated
#      config: one UDP listener on 127.0.0.1:$GW_PORT routing every call to a
#      sipp uas on 127.0.0.1:$UAS_PORT, SQLite journal on;
#   2. runs ../shared/bench/anchors.sh against it (GATEWAY, GATEWAY_PID,
#      GATEWAY_NAME=ucgate); without that script, a smaller built-in rate
#      search (sipp direct vs. sipp through ucgate);
#   3. go test -run '^$' -bench . -benchmem -count N over every package with
#      benchmarks, summarized with benchstat (or an awk median).
#
# It prints calls/s direct, calls/s through ucgate, their ratio, CPU seconds
# per 1000 calls and MiB per 1000 concurrent calls. Loopback only, every
# run bounded in calls and time (the whole bench stays under 25 minutes),
# and only processes started here are stopped, by PID.
#
# Environment:
#   BENCH_QUICK=1   short run: one repetition, short steps, -count 1
#   BENCH_OUT=DIR   results directory (default: a new temp dir)
#   BENCH_BUDGET=S  Go benchmarks stop being started S seconds after the
#                   start of the bench (default 1440: the whole bench < 25 min)
#   BENCH_SECTIONS="S ..."  run only these sections (sip stages-off media
#                   transcode xmpp plugins sipbridge webrtc feedback transform go)
#   UCGATE_BIN=F    use this binary instead of building bin/ucgate
#   ANCHORS=F       anchors script (default: ../shared/bench/anchors.sh)
#   GW_PORT, UAS_PORT, ADMIN_PORT   ports (default 17050, 17070, 17096); the
#                   uac/ctrl/media ports follow anchors.sh's UAC_PORT,
#                   UAS_CTRL_PORT, UAC_CTRL_PORT, UAS_MEDIA_PORT, UAC_MEDIA_PORT
#   Any anchors.sh parameter (REPS, STEP_SECS, TIME_BUDGET, ...) passes through.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH="$PATH:/usr/sbin:/sbin"

QUICK=${BENCH_QUICK:-0}
[[ $QUICK == 0 || -z $QUICK ]] && QUICK=0 || QUICK=1
GW_PORT=${GW_PORT:-17050}
UAS_PORT=${UAS_PORT:-17070}
ADMIN_PORT=${ADMIN_PORT:-17096}
ANCHORS=${ANCHORS:-$ROOT/../shared/bench/anchors.sh}
OUT=${BENCH_OUT:-$(mktemp -d -t ucgate-bench.XXXXXX)}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
BENCHSTAT=golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
T0=$(date +%s)

# want SECTION: BENCH_SECTIONS (e.g. "xmpp webrtc go") lists the sections to
# run; empty runs all: sip stages-off media transcode xmpp plugins sipbridge
# webrtc feedback go.
want() { [[ -z ${BENCH_SECTIONS:-} || " $BENCH_SECTIONS " == *" $1 "* ]]; }

# The median of numbers, in the shell (median_lines: one per line on stdin)
# and in awk (AWK_MEDIAN: median(s, none), s a space-separated list; none
# is returned for an empty one), for every section's figures.
median_lines() { sort -n | awk '{a[NR] = $1} END {if (NR) print a[int((NR + 1) / 2)]}'; }
AWK_MEDIAN='function median(s, none,   a, c, i, j, t) {
      c = split(s, a, " "); if (c == 0) return none
      for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      return (c % 2) ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
    }'

log() { printf '[bench %4ds] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
die() { echo "bench: error: $*" >&2; exit 1; }

# ----------------------------------------------------- process bookkeeping
PIDS=()
stop_pid() {
  # TERM, wait up to 10 s, then KILL; only PIDs this script started.
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
  kill -TERM "$pid" 2>/dev/null
  for (( i = 0; i < 100; i++ )); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}
cleanup() { local p; for p in "${PIDS[@]}"; do stop_pid "$p"; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM

udp_bound() { ss -Hlun "sport = :$1" 2>/dev/null | grep -q .; }
tcp_bound() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

# ------------------------------------------------------------ preparation
log "results in $OUT (quick=$QUICK)"
scripts/deps.sh bench >"$OUT/deps.log" 2>&1 || {
  log "deps: bench extras (kamailio) unavailable, see $OUT/deps.log; continuing without"
  scripts/deps.sh >>"$OUT/deps.log" 2>&1 || die "scripts/deps.sh failed, see $OUT/deps.log"
}
command -v sipp >/dev/null || die "sipp not found"

if [[ -n ${UCGATE_BIN:-} ]]; then
  BIN=$UCGATE_BIN
  [[ -x $BIN ]] || die "UCGATE_BIN=$BIN is not executable"
else
  log "building bin/ucgate"
  mkdir -p bin
  go build -o bin/ucgate ./cmd/ucgate || die "go build ./cmd/ucgate failed"
  BIN=$ROOT/bin/ucgate
fi

# The fixed ports of this script and of anchors.sh (all overridable).
for p in "$GW_PORT" "$UAS_PORT" "${UAC_PORT:-17080}" "${UAS_CTRL_PORT:-17090}" "${UAC_CTRL_PORT:-17091}" \
         "${UAS_MEDIA_PORT:-17200}" "${UAC_MEDIA_PORT:-17100}" "${KAM_PORT:-17060}"; do
  udp_bound "$p" && die "UDP port $p on this host is in use (another bench running?); set GW_PORT, UAS_PORT, UAC_PORT, ... to other ports in 17000-17999"
done
tcp_bound "$ADMIN_PORT" && die "TCP port $ADMIN_PORT is in use"

# write_config FILE on|off: the gateway under test. With every security
# stage on, the load generator is what an operator would list as trusted
# (no credentials, no rate or admission limits on it): every stage still
# runs on every request. "off" turns every stage off.
write_config() {
  cat >"$1" <<EOF
data_dir: $OUT/data-$2
admin:
  listen: 127.0.0.1:$ADMIN_PORT
sip:
  listeners:
    - {zone: internet, transport: udp, listen: 127.0.0.1:$GW_PORT}
  upstreams:
    - {name: uas, address: 127.0.0.1:$UAS_PORT, transport: udp, zone: trunk}
  routes:
    - {default: true, upstreams: [uas]}
journal:
  sqlite: {enabled: true}
# The call rate is measured with signalling only (sipp sends no RTP); the
# media relay is measured on its own below.
media: {enabled: false}
EOF
  if [[ $2 == on ]]; then
    cat >>"$1" <<EOF
policies:
  auth: {trusted: [127.0.0.0/8]}
  ratelimit:
    trusted: [127.0.0.0/8]
    trusted_budget: {packets: 1000000, packet_burst: 2000000, bytes: 1000000000, byte_burst: 2000000000}
    global_packets: 0
  admission:
    source: {concurrent: 0, rate: 0}
    user: {concurrent: 0, rate: 0}
    global: {concurrent: 0, rate: 0}
EOF
  else
    echo "policies:" >>"$1"
    local p
    for p in acl blacklist ratelimit conncap scan tlsrequired validate dialog bruteforce auth srtp admission rtpguard triggers; do
      echo "  $p: {enabled: false}" >>"$1"
    done
  fi
}

# start_gateway on|off: starts ucgate and sets GW_PID.
start_gateway() {
  local cfg=$OUT/ucgate-$1.yaml i
  write_config "$cfg" "$1"
  "$BIN" check -c "$cfg" >/dev/null || die "generated config $cfg does not validate"
  "$BIN" run -c "$cfg" >"$OUT/ucgate-$1.log" 2>&1 &
  GW_PID=$!
  PIDS+=("$GW_PID")
  for (( i = 0; i < 200; i++ )); do
    udp_bound "$GW_PORT" && break
    kill -0 "$GW_PID" 2>/dev/null || { tail -20 "$OUT/ucgate-$1.log" >&2; die "ucgate exited at start"; }
    sleep 0.1
  done
  udp_bound "$GW_PORT" || { tail -20 "$OUT/ucgate-$1.log" >&2; die "ucgate did not bind 127.0.0.1:$GW_PORT in 20 s"; }
  log "ucgate (stages $1) pid $GW_PID on 127.0.0.1:$GW_PORT -> uas 127.0.0.1:$UAS_PORT ($BIN)"
}

# ------------------------------------------------------------- the gateway
SIP_RC=0; GO_RC=0
if want sip; then
start_gateway on

# ------------------------------------------------------- figures (shared)
# print_figures BEST STEPS CONC REF: one block a person can compare.
# BEST: target rep rate first_fail; STEPS: anchors' steps.tsv columns;
# CONC: anchors' conc.tsv columns.
print_figures() {
  local best=$1 steps=$2 conc=$3 ref=$4
  echo
  echo "== ucgate bench figures ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, quick=$QUICK)"
  awk -F'\t' -v ref="$ref" -v gw=ucgate '
    '"$AWK_MEDIAN"'
    function show(label, v, fmt) { if (v == "") printf "  %-52s %s\n", label, "-"; else printf "  %-52s " fmt "\n", label, v }
    FILENAME == ARGV[1] { best[$1] = best[$1] " " $3; b[$1, $2] = $3; if ($2 > reps) reps = $2; next }
    FILENAME == ARGV[2] { if (FNR == 1) next
      if ($3 == ref && $13 != "-") cpuref[$1] = cpuref[$1] " " $13
      if ($19 == 1 && $13 != "-" && $3 + 0 > topr[$1, $2] + 0) { topr[$1, $2] = $3; topc[$1, $2] = $13 }
      next }
    FILENAME == ARGV[3] { if (FNR == 1 || $2 + 0 == 0) next
      mib[$1] = mib[$1] " " ($14 - $6) / 1024 / $2 * 1000
      peak[$1] = peak[$1] " " ($7 - $6) / 1024 / $2 * 1000
      n[$1] = n[$1] " " $2
      next }
    END {
      for (r = 1; r <= reps; r++) {
        if (b["direct", r] > 0 && (gw, r) in b) ratio = ratio " " b[gw, r] / b["direct", r]
        if (b["direct", r] > 0 && ("kamailio", r) in b) kratio = kratio " " b["kamailio", r] / b["direct", r]
        if ((gw, r) in topc) cpumax = cpumax " " topc[gw, r]
      }
      show("calls/s direct (sipp -> sipp)", median(best["direct"]), "%d")
      show("calls/s through ucgate", median(best[gw]), "%d")
      show("ratio ucgate / direct", median(ratio), "%.3f")
      if ("kamailio" in best) {
        show("calls/s through kamailio (reference)", median(best["kamailio"]), "%d")
        show("ratio kamailio / direct", median(kratio), "%.3f")
      }
      show("ucgate CPU-seconds per 1000 calls @" ref " cps", median(cpuref[gw]), "%.3f")
      show("ucgate CPU-seconds per 1000 calls @max", median(cpumax), "%.3f")
      if ("kamailio" in cpuref) show("kamailio CPU-seconds per 1000 calls @" ref " cps", median(cpuref["kamailio"]), "%.3f")
      show("ucgate MiB per 1000 concurrent calls (held; N=" substr(n[gw], 2) ")", median(mib[gw]), "%.2f")
      show("ucgate MiB per 1000 concurrent calls (ramp peak)", median(peak[gw]), "%.2f")
      if ("kamailio" in mib) show("kamailio MiB per 1000 concurrent calls (held)", median(mib["kamailio"]), "%.2f")
      print "  medians over repetitions; memory = growth of PSS with N calls held open"
    }' "$best" "$steps" "$conc"
}

# ------------------------------------------------- 2a. the shared anchors
run_anchors() {
  local targets="direct"
  command -v kamailio >/dev/null && targets="direct kamailio"
  local -a env=(
    GATEWAY="127.0.0.1:$GW_PORT" GATEWAY_PID="$GW_PID" GATEWAY_NAME=ucgate
    UAS_PORT="$UAS_PORT" OUT_DIR="$OUT/anchors" TARGETS="${TARGETS:-$targets}"
  )
  if (( QUICK )); then
    env+=(REPS="${REPS:-1}" STEP_SECS="${STEP_SECS:-2}" MIN_CALLS="${MIN_CALLS:-200}"
          CALL_MS="${CALL_MS:-500}" REFINE_STEPS="${REFINE_STEPS:-1}"
          CONC_LIST="${CONC_LIST:-1000}" CONC_LATE_SECS="${CONC_LATE_SECS:-6}"
          DRAIN_SECS="${DRAIN_SECS:-3}" SETTLE_SECS="${SETTLE_SECS:-1}"
          TIME_BUDGET="${TIME_BUDGET:-120}")
  else
    env+=(TIME_BUDGET="${TIME_BUDGET:-540}")
  fi
  log "running $ANCHORS (${env[*]})"
  # anchors.sh stops by its own TIME_BUDGET; the timeout is a backstop only.
  env "${env[@]}" timeout -s INT -k 30 1200 bash "$ANCHORS" 2>&1 | tee "$OUT/anchors.log"
  local rc=${PIPESTATUS[0]}
  (( rc == 0 )) || log "anchors.sh exited $rc (see $OUT/anchors.log)"
  local a=$OUT/anchors
  if [[ -s $a/best.tsv ]]; then
    print_figures "$a/best.tsv" "$a/steps.tsv" "$a/conc.tsv" "${REF_RATE:-1000}" | tee "$OUT/figures.txt"
  fi
  return "$rc"
}

# ----------------------------------------------- 2b. built-in fallback
# A smaller version of the anchors: sipp uas on UAS_PORT, sipp uac direct and
# through ucgate, call rate doubled until a step fails, then one bisection;
# CPU of ucgate per 1000 calls; memory of ucgate with N calls held open.
FB_UAC_PORT=${UAC_PORT:-17080}; FB_UAC_MP=${UAC_MEDIA_PORT:-17100}; FB_UAC_CP=${UAC_CTRL_PORT:-17091}
FB_UAS_MP=${UAS_MEDIA_PORT:-17200}; FB_UAS_CP=${UAS_CTRL_PORT:-17090}
FB_UAS_PID=""
fb_start_uas() {
  sipp -sn uas -i 127.0.0.1 -p "$UAS_PORT" -mi 127.0.0.1 -mp "$FB_UAS_MP" -cp "$FB_UAS_CP" \
    -buff_size 4194304 -nostdin -timeout 900s >"$OUT/fallback/uas-$1.log" 2>&1 &
  FB_UAS_PID=$!
  PIDS+=("$FB_UAS_PID")
  local i
  for (( i = 0; i < 50; i++ )); do udp_bound "$UAS_PORT" && return 0; sleep 0.1; done
  die "sipp uas did not bind $UAS_PORT"
}
fb_stop_uas() { stop_pid "$FB_UAS_PID"; FB_UAS_PID=""; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
pss_kb() { awk '/^Pss:/{print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
# last-row fields of a sipp -stf file: successful failed
fb_stats() {
  [[ -s $1 ]] || { echo "0 0"; return; }
  awk -F';' 'NR==1{for(i=1;i<=NF;i++)c[$i]=i; next} {l=$0} END{split(l,v,";"); print v[c["SuccessfulCall(C)"]]+0, v[c["FailedCall(C)"]]+0}' "$1"
}

# fb_step TARGET REP RATE -> appends to steps.tsv (anchors' column layout)
fb_step() {
  local target=$1 rep=$2 rate=$3 addr calls limit csv rc=0 t0 t1 w0 w1 succ fail el pass per1k
  addr=127.0.0.1:$UAS_PORT; [[ $target == ucgate ]] && addr=127.0.0.1:$GW_PORT
  calls=$(( rate * FB_STEP_SECS )); (( calls < FB_MIN_CALLS )) && calls=$FB_MIN_CALLS
  limit=$(( calls / rate + FB_CALL_MS / 1000 + 6 ))
  csv=$OUT/fallback/uac-$target-r$rep-$rate.csv
  fb_start_uas "$target-r$rep-$rate"
  t0=$(cpu_ticks "$GW_PID"); w0=$(date +%s.%N)
  timeout -k 2 $(( limit + 3 )) sipp -sn uac "$addr" -i 127.0.0.1 -p "$FB_UAC_PORT" -mi 127.0.0.1 \
    -mp "$FB_UAC_MP" -cp "$FB_UAC_CP" -buff_size 4194304 -nostdin -default_behaviors all,-abortunexp \
    -r "$rate" -m "$calls" -l "$calls" -d "$FB_CALL_MS" -timeout "${limit}s" \
    -trace_stat -stf "$csv" -fd 1 >"$OUT/fallback/uac-$target-r$rep-$rate.log" 2>&1 || rc=$?
  w1=$(date +%s.%N); t1=$(cpu_ticks "$GW_PID")
  fb_stop_uas
  read -r succ fail < <(fb_stats "$csv")
  el=$(awk -v a="$w0" -v b="$w1" 'BEGIN{printf "%.2f", b - a}')
  # pass: rc 0, every call successful, and the uac kept up (95 % of the rate)
  pass=$(awk -v rc="$rc" -v s="$succ" -v f="$fail" -v c="$calls" -v el="$el" -v h="$FB_CALL_MS" -v r="$rate" \
    'BEGIN{g = el - h / 1000; if (g < 0.001) g = 0.001; print (rc == 0 && f == 0 && s == c && s / g >= 0.95 * r) ? 1 : 0}')
  per1k="-"
  [[ $target == ucgate && $succ -gt 0 ]] && per1k=$(awk -v t=$(( t1 - t0 )) -v k="$(getconf CLK_TCK)" -v s="$succ" 'BEGIN{printf "%.3f", t / k / s * 1000}')
  printf '%s\t%d\t%d\t%d\t%d\t%d\t-\t-\t-\t%s\t-\t-\t%s\t-\t-\t-\t-\t%d\t%d\n' \
    "$target" "$rep" "$rate" "$calls" "$succ" "$fail" "$el" "$per1k" "$rc" "$pass" >>"$OUT/fallback/steps.tsv"
  log "fallback $target rep$rep r=$rate calls=$calls ok=$succ fail=$fail ${el}s cpu/1k=$per1k $([[ $pass == 1 ]] && echo PASS || echo FAIL)"
  FB_PASS=$pass
  sleep 1
}

fb_search() {
  local target=$1 rep=$2 lo=0 hi=0 rate=$FB_REF_RATE mid
  while (( rate <= FB_MAX_RATE )) && (( $(date +%s) - T0 < FB_BUDGET )); do
    fb_step "$target" "$rep" "$rate"
    if (( FB_PASS )); then lo=$rate; rate=$(( rate * 2 )); else hi=$rate; break; fi
  done
  if (( lo == 0 && hi > 0 )); then
    rate=$(( hi / 4 )); (( rate < 10 )) && rate=10
    fb_step "$target" "$rep" "$rate"; (( FB_PASS )) && lo=$rate
  elif (( lo > 0 && hi > lo )) && (( $(date +%s) - T0 < FB_BUDGET )); then
    mid=$(( (lo + hi) / 2 ))
    fb_step "$target" "$rep" "$mid"; (( FB_PASS )) && lo=$mid || hi=$mid
  fi
  printf '%s\t%d\t%d\t%d\n' "$target" "$rep" "$lo" "$hi" >>"$OUT/fallback/best.tsv"
  log "fallback $target rep$rep: best sustained rate $lo calls/s"
}

fb_conc() {
  local n=$1 ramp hold limit csv base peak late uac
  ramp=$(( (n + FB_CONC_RATE - 1) / FB_CONC_RATE )); hold=$(( (ramp + 8) * 1000 ))
  limit=$(( ramp + hold / 1000 + 10 )); csv=$OUT/fallback/uac-conc-$n.csv
  sleep 3
  fb_start_uas "conc-$n"
  base=$(pss_kb "$GW_PID")
  timeout -k 2 $(( limit + 3 )) sipp -sn uac "127.0.0.1:$GW_PORT" -i 127.0.0.1 -p "$FB_UAC_PORT" -mi 127.0.0.1 \
    -mp "$FB_UAC_MP" -cp "$FB_UAC_CP" -buff_size 4194304 -nostdin -default_behaviors all,-abortunexp \
    -r "$FB_CONC_RATE" -m "$n" -l $(( n + 100 )) -d "$hold" -timeout "${limit}s" \
    -trace_stat -stf "$csv" -fd 1 >"$OUT/fallback/uac-conc-$n.log" 2>&1 &
  uac=$!; PIDS+=("$uac")
  sleep $(( ramp + 1 )); peak=$(pss_kb "$GW_PID")
  sleep 5; late=$(pss_kb "$GW_PID")
  wait "$uac"
  fb_stop_uas
  local succ fail; read -r succ fail < <(fb_stats "$csv")
  # anchors' conc.tsv columns: 6 base_pss, 7 peak_pss, 14 late_pss
  printf 'ucgate\t%d\t-\t0\t0\t%d\t%d\t-\t-\t%d\t%d\t0\t0\t%d\t-\n' "$n" "$base" "$peak" "$succ" "$fail" "$late" >>"$OUT/fallback/conc.tsv"
  log "fallback ucgate $n concurrent: PSS $base -> $peak -> $late KiB, ok=$succ fail=$fail"
}

run_fallback() {
  echo "bench: $ANCHORS not found (a fresh machine may lack ../shared);"
  echo "bench: running the built-in fallback: sipp direct vs. sipp through ucgate, bounded rate search"
  mkdir -p "$OUT/fallback"
  : >"$OUT/fallback/best.tsv"
  printf 'target\trep\trate\tcalls\tok\tfailed\t-\t-\t-\telapsed_s\t-\t-\tproxy_cpu_s_per_1k\t-\t-\t-\t-\trc\tpass\n' >"$OUT/fallback/steps.tsv"
  printf 'target\tconcurrent\t-\t-\t-\tbase_pss_kb\tpeak_pss_kb\t-\t-\tok\tfailed\t-\t-\tlate_pss_kb\t-\n' >"$OUT/fallback/conc.tsv"
  if (( QUICK )); then
    FB_REPS=1 FB_STEP_SECS=2 FB_MIN_CALLS=200 FB_CALL_MS=500 FB_CONC_LIST="1000" FB_BUDGET=240
  else
    FB_REPS=3 FB_STEP_SECS=4 FB_MIN_CALLS=500 FB_CALL_MS=1000 FB_CONC_LIST="1000 5000" FB_BUDGET=720
  fi
  FB_REF_RATE=${REF_RATE:-500}; FB_MAX_RATE=${MAX_RATE:-32000}; FB_CONC_RATE=500
  local n rep
  for n in $FB_CONC_LIST; do fb_conc "$n"; done
  for (( rep = 1; rep <= FB_REPS; rep++ )); do
    fb_search direct "$rep"
    fb_search ucgate "$rep"
  done
  print_figures "$OUT/fallback/best.tsv" "$OUT/fallback/steps.tsv" "$OUT/fallback/conc.tsv" "$FB_REF_RATE" | tee "$OUT/figures.txt"
}

SIP_RC=0
if [[ -f $ANCHORS ]]; then
  run_anchors || SIP_RC=$?
else
  run_fallback || SIP_RC=$?
fi

stop_pid "$GW_PID"
log "ucgate stopped"
fi # sip

# ------------------------------- 2c. the same gateway with every stage off
if want stages-off; then
# One shorter rate search of ucgate alone, to show what the security stages
# cost: calls/s with every stage on (above) against every stage off.
if [[ -f $ANCHORS ]]; then
  start_gateway off
  OFF_ENV=(GATEWAY="127.0.0.1:$GW_PORT" GATEWAY_PID="$GW_PID" GATEWAY_NAME=ucgate_off UAS_PORT="$UAS_PORT"
           OUT_DIR="$OUT/anchors-off" TARGETS="" REPS=1 CONC_LIST="1000" TIME_BUDGET="${OFF_BUDGET:-150}")
  (( QUICK )) && OFF_ENV+=(STEP_SECS=2 MIN_CALLS=200 CALL_MS=500 REFINE_STEPS=1 CONC_LATE_SECS=6 DRAIN_SECS=3 TIME_BUDGET=60)
  log "stages off: $ANCHORS (${OFF_ENV[*]})"
  env "${OFF_ENV[@]}" timeout -s INT -k 30 600 bash "$ANCHORS" >"$OUT/anchors-off.log" 2>&1 \
    || log "anchors.sh (stages off) exited $? (see $OUT/anchors-off.log)"
  stop_pid "$GW_PID"
  on=$(awk -F'\t' '$1 == "ucgate" {print $3}' "$OUT/anchors/best.tsv" 2>/dev/null | sort -n \
    | awk '{a[NR] = $1} END {if (NR) print a[int((NR + 1) / 2)]}')
  off=$(awk -F'\t' '$1 == "ucgate_off" {print $3}' "$OUT/anchors-off/best.tsv" 2>/dev/null | head -1)
  {
    echo
    echo "== security stages: calls/s of ucgate with every stage on vs every stage off"
    printf '  %-52s %s\n' "calls/s, all stages on (median)" "${on:--}" "calls/s, all stages off (one run)" "${off:--}"
    if [[ -n $on && -n $off && $off != 0 ]]; then
      awk -v a="$on" -v b="$off" 'BEGIN {printf "  %-52s %.3f\n", "ratio on / off", a / b}'
    fi
  } | tee -a "$OUT/figures.txt"
fi
fi # stages-off

# ------------------------------------------------- 2d. the media relay
if want media; then
# ucgate's relay (core/media, real loopback sockets, 100 streams of 20 ms
# G.711) in packets per CPU-second, beside rtpengine's user-space relay
# measured on this box by ../shared/bench/rtpengine.sh, as a ratio.
RTPENGINE_SH=${RTPENGINE_SH:-$ROOT/../shared/bench/rtpengine.sh}
log "media relay: BenchmarkRelayLoopback"
MEDIA_COUNT=300000; (( QUICK )) && MEDIA_COUNT=100000
timeout -k 10 600 go test -run '^$' -bench 'RelayLoopback/(forward|rtp|srtp-to-rtp)/streams=100/window=400' \
  -benchtime "${MEDIA_COUNT}x" -count "$( (( QUICK )) && echo 1 || echo 3 )" ./core/media/ >"$OUT/relay.txt" 2>&1 \
  || log "relay benchmark failed (see $OUT/relay.txt)"
relay_med() { # median pkts/cpu-s of a sub-benchmark
  awk -v m="$1" '$1 ~ "RelayLoopback/" m "/" { for (i = 2; i < NF; i++) if ($(i + 1) == "pkts/cpu-s") print $i }' "$OUT/relay.txt" \
    | median_lines
}
RE_PPS=""
if [[ -f $RTPENGINE_SH ]] && command -v rtpengine >/dev/null; then
  log "media relay: $RTPENGINE_SH"
  RE_ENV=(OUT_DIR="$OUT/rtpengine" REPS=1)
  (( QUICK )) && RE_ENV+=(DURATION=3 RATES="40000 80000 160000")
  env "${RE_ENV[@]}" timeout -s INT -k 10 600 bash "$RTPENGINE_SH" >"$OUT/rtpengine.log" 2>&1 || log "rtpengine.sh exited $? (see $OUT/rtpengine.log)"
  # the script's summary: packets relayed per CPU-second of rtpengine
  RE_PPS=$(grep -Eo '[0-9]+ packets per rtpengine CPU-second' "$OUT/rtpengine.log" | awk '{print $1}' | sort -n | tail -1)
else
  log "media relay: rtpengine or $RTPENGINE_SH not available; no anchor"
fi
{
  echo
  echo "== media relay: packets relayed per CPU-second (160-byte payloads, 100 streams)"
  for m in forward rtp srtp-to-rtp; do
    printf '  %-52s %s\n' "ucgate relay, $m$([[ $m == forward ]] && echo ' (plain Go UDP forwarder: the kernel path)')" "$(relay_med "$m")"
  done
  printf '  %-52s %s\n' "rtpengine (user space, this box)" "${RE_PPS:--}"
  rtp=$(relay_med rtp)
  if [[ -n $RE_PPS && -n $rtp ]]; then
    awk -v a="$rtp" -v b="$RE_PPS" 'BEGIN {printf "  %-52s %.2f\n", "ratio ucgate rtp / rtpengine", a / b}'
  fi
  fwd=$(relay_med forward)
  if [[ -n $fwd && -n $rtp ]]; then
    awk -v a="$rtp" -v b="$fwd" 'BEGIN {printf "  %-52s %.2f\n", "ratio ucgate rtp / plain forwarder", a / b}'
  fi
} | tee -a "$OUT/figures.txt"
fi # media

# ------------------------------------------- 2e. video transcoding
if want transcode; then
# The transcoder (package transcode: libvpx, openh264, libyuv; RTP in and
# out, codecs single-threaded) in frames per CPU-second (one core) and the
# time each frame spends in it, beside the ffmpeg command transcoding the
# same 60-frame testsrc clips (looped 5 times) on one thread. VP8 output:
# ffmpeg with the same libvpx real-time settings; H.264 output: Debian's
# ffmpeg has no openh264 encoder, so libx264 -preset veryfast -tune
# zerolatency, constrained baseline.
TC_DIR="$OUT/transcode-clips"; mkdir -p "$TC_DIR"
TC_COUNT=3; TC_N=600; (( QUICK )) && { TC_COUNT=1; TC_N=120; }
log "video transcoding: BenchmarkTranscode"
TRANSCODE_CLIP_DIR="$TC_DIR" timeout -k 10 600 go test -run '^$' -bench '^BenchmarkTranscode$' -benchtime "${TC_N}x" \
  -count "$TC_COUNT" ./transcode/ >"$OUT/transcode.txt" 2>&1 || log "transcode benchmark failed (see $OUT/transcode.txt)"
tc_med() { # median of metric $2 of sub-benchmark $1
  awk -v m="$1" -v k="$2" '$1 ~ "Transcode/" m "-[0-9]+$" { for (i = 2; i < NF; i++) if ($(i + 1) == k) print $i }' "$OUT/transcode.txt" \
    | median_lines
}
tc_ffmpeg() { # frames per CPU-second of one ffmpeg run: $1 input, rest: encoder options
  local in=$1; shift
  [[ -f $in ]] || return 0
  if [[ $in == *.h264 ]]; then # a raw stream does not loop: the same bits in Matroska
    ffmpeg -hide_banner -loglevel error -y -f h264 -r 30 -i "$in" -c copy "${in%.h264}.mkv" || return 0
    in=${in%.h264}.mkv
  fi
  timeout -k 5 300 ffmpeg -hide_banner -benchmark -threads 1 -stream_loop 4 -i "$in" "$@" -threads 1 -f null - 2>&1 \
    | tr '\r' '\n' | awk '
        /frame= *[0-9]+/ { match($0, /frame= *[0-9]+/); f = substr($0, RSTART + 6, RLENGTH - 6) + 0 }
        /^bench: utime=/ { match($0, /utime=[0-9.]+/); u = substr($0, RSTART + 6, RLENGTH - 6); match($0, /stime=[0-9.]+/); s = substr($0, RSTART + 6, RLENGTH - 6) }
        END { if (f > 0 && u + s > 0) printf "%.1f", f / (u + s) }'
}
{
  echo
  echo "== video transcoding: frames per CPU-second (one core) and added latency, 60-frame testsrc clip"
  printf '  %-22s %12s %12s %9s %9s %8s\n' "direction/size" "ucgate f/cpu-s" "ffmpeg f/cpu-s" "ratio" "p50 ms" "p99 ms"
  for d in vp8-h264 h264-vp8; do
    for sz in 640x480 1280x720; do
      ours=$(tc_med "$d/$sz" frames/cpu-s)
      if [[ $d == vp8-h264 ]]; then
        br=1M; [[ $sz == 1280x720 ]] && br=2500k
        ff=$(tc_ffmpeg "$TC_DIR/vp8-$sz-60-60.ivf" -c:v libx264 -profile:v baseline -preset veryfast -tune zerolatency -b:v "$br")
      else
        br=1M; [[ $sz == 1280x720 ]] && br=2500k
        ff=$(tc_ffmpeg "$TC_DIR/h264-$sz-60-60.h264" -c:v libvpx -deadline realtime -cpu-used 6 -lag-in-frames 0 -b:v "$br")
      fi
      ratio=-
      [[ -n $ours && -n $ff ]] && ratio=$(awk -v a="$ours" -v b="$ff" 'BEGIN {printf "%.2f", a / b}')
      printf '  %-22s %12s %12s %9s %9s %8s\n' "$d $sz" "${ours:--}" "${ff:--}" "$ratio" "$(tc_med "$d/$sz" p50-ms)" "$(tc_med "$d/$sz" p99-ms)"
    done
  done
} | tee -a "$OUT/figures.txt"
fi # transcode

# ------------------------------------------- 2g. XMPP proxy
if want xmpp; then
# Chat messages per second from one client to another through a Prosody
# started by the benchmark: straight to Prosody's direct TLS port, and
# through the gateway's XMPP proxy (direct TLS to ucgate, plain TCP to
# Prosody; every stage on but the per-source budgets); and the gateway's
# RSS growth per 1000 clients logged in through the proxy.
if command -v prosody >/dev/null; then
  XN=20000; XCOUNT=3; (( QUICK )) && { XN=5000; XCOUNT=1; }
  log "xmpp: BenchmarkXMPPRelay, BenchmarkXMPPClients"
  XMPP_BENCH_CLIENTS=1000 UCGATE_BIN="$BIN" timeout -k 10 600 go test -run '^$' -bench '^BenchmarkXMPP(Relay|Clients)$' \
    -benchtime "${XN}x" -count "$XCOUNT" ./e2e/ >"$OUT/xmpp.txt" 2>&1 || log "xmpp benchmark failed (see $OUT/xmpp.txt)"
  x_med() { # median of metric $2 of benchmark $1
    awk -v m="$1" -v k="$2" '$1 ~ "^Benchmark" m "-[0-9]+$" { for (i = 2; i < NF; i++) if ($(i + 1) == k) print $i }' "$OUT/xmpp.txt" \
      | median_lines
  }
  {
    echo
    echo "== XMPP: chat messages/s through Prosody, direct and through the ucgate proxy"
    xd=$(x_med XMPPRelay/direct msgs/s); xp=$(x_med XMPPRelay/proxy msgs/s)
    printf '  %-52s %s\n' "msgs/s straight to Prosody" "${xd:--}" "msgs/s through ucgate" "${xp:--}"
    if [[ -n $xd && -n $xp ]]; then
      awk -v a="$xp" -v b="$xd" 'BEGIN {printf "  %-52s %.2f\n", "ratio through ucgate / straight", a / b}'
    fi
    printf '  %-52s %s\n' "ucgate MiB RSS per 1000 clients logged in" "$(x_med XMPPClients MiB/1000clients)"
  } | tee -a "$OUT/figures.txt"
else
  log "xmpp: prosody not installed (scripts/deps.sh), skipped"
fi
fi # xmpp

# ------------------------------------------- 2f. plugins
if want plugins; then
# One event through a stage plugin (a real process, gRPC over loopback
# with mutual TLS) against the same check in process: medians of the
# runs' ns/op, p50, p99 and allocations, and the ratio.
PL_COUNT=5; (( QUICK )) && PL_COUNT=1
log "plugins: BenchmarkStageRoundTrip (-count $PL_COUNT)"
timeout -k 10 300 go test -run '^$' -bench '^BenchmarkStageRoundTrip$' -benchtime 5000x -count "$PL_COUNT" \
  ./plugins/host/ >"$OUT/plugins.txt" 2>&1 || log "plugin benchmark exited $? (see $OUT/plugins.txt)"
{
  echo "== plugins: one event through a stage plugin vs the same check in process (medians of $PL_COUNT runs)"
  awk '
    $1 ~ /^BenchmarkStageRoundTrip\// {
      split($1, n, "/"); k = n[2]; sub(/-[0-9]+$/, "", k)
      for (i = 3; i < NF; i++) v[k, $(i + 1)] = v[k, $(i + 1)] " " $i
      seen[k] = 1
    }
    '"$AWK_MEDIAN"'
    END {
      printf "  %-12s %12s %12s %12s %10s\n", "", "ns/op", "p50 ns", "p99 ns", "allocs/op"
      for (k in seen) printf "  %-12s %12.0f %12.0f %12.0f %10.0f\n", k, median(v[k, "ns/op"]), median(v[k, "p50-ns"]), median(v[k, "p99-ns"]), median(v[k, "allocs/op"])
      if (("plugin" in seen) && ("in-process" in seen) && median(v["in-process", "ns/op"]) > 0)
        printf "  %-12s %12.1f %12.1f %12.1f\n", "ratio", median(v["plugin", "ns/op"]) / median(v["in-process", "ns/op"]),
          median(v["plugin", "p50-ns"]) / median(v["in-process", "p50-ns"]), median(v["plugin", "p99-ns"]) / median(v["in-process", "p99-ns"])
    }' "$OUT/plugins.txt"
} | tee -a "$OUT/figures.txt"
fi # plugins

# ------------------------------------- 2i. SIP side of SIP<->XMPP interworking
if want sipbridge; then
# One-to-one messages through the SIP adapter, one at a time over loopback,
# each answered: a SIP MESSAGE to the bridge, a core.Message to a SIP user,
# and a SIP MESSAGE relayed SIP to SIP for comparison; medians of msgs/s
# and the ratios to the relayed one. Then reading and writing PIDF.
BR_COUNT=5; (( QUICK )) && BR_COUNT=1
log "sip bridge: BenchmarkBridgeMessage, BenchmarkPIDF (-count $BR_COUNT)"
timeout -k 10 300 go test -run '^$' -bench '^Benchmark(BridgeMessage|PIDF)$' -benchtime 3000x -benchmem -count "$BR_COUNT" \
  ./protocols/sip/ >"$OUT/sipbridge.txt" 2>&1 || log "sip bridge benchmark exited $? (see $OUT/sipbridge.txt)"
{
  echo "== SIP<->XMPP bridge, SIP side: messages/s one at a time over loopback (medians of $BR_COUNT runs)"
  awk '
    $1 ~ /^Benchmark(BridgeMessage|PIDF)\// {
      k = $1; sub(/^Benchmark/, "", k); sub(/-[0-9]+$/, "", k); if (!(k in seen)) order[++n] = k; seen[k] = 1
      for (i = 3; i < NF; i++) v[k, $(i + 1)] = v[k, $(i + 1)] " " $i
    }
    '"$AWK_MEDIAN"'
    END {
      printf "  %-34s %10s %10s %10s %10s\n", "", "msgs/s", "ns/op", "allocs/op", "ratio"
      ref = median(v["BridgeMessage/sip-to-sip", "msgs/s"])
      for (i = 1; i <= n; i++) {
        k = order[i]; m = median(v[k, "msgs/s"]); r = "-"
        if (m > 0 && ref > 0) r = sprintf("%.2f", m / ref)
        printf "  %-34s %10s %10.0f %10.0f %10s\n", k, (m > 0 ? sprintf("%.0f", m) : "-"), median(v[k, "ns/op"]), median(v[k, "allocs/op"]), r
      }
      print "  (ratio: messages/s over a SIP MESSAGE relayed SIP to SIP)"
    }' "$OUT/sipbridge.txt"
} | tee -a "$OUT/figures.txt"
fi # sipbridge

# ------------------------------------------- 2j. WebRTC (browsers)
if want webrtc; then
# DTLS handshakes per second (pion/dtls client against the gateway's
# ICE-lite and DTLS transport on loopback); the time from the INVITE to
# media flowing, with pion/webrtc as the browser (WS) beside a plain SIP
# call (UDP, RTP/AVP), and with headless Chromium on the softphone page
# (WSS); concurrent calls per core of the gateway's CPU and its RSS,
# WebRTC beside plain SIP. The SIP side is the builtin echo. Medians of
# the runs, and the ratios WebRTC / plain SIP.
WR_COUNT=3; WR_CALLS=${WEBRTC_BENCH_CALLS:-50}; WR_SETUPS=30
(( QUICK )) && { WR_COUNT=1; WR_CALLS=20; WR_SETUPS=10; }
log "webrtc: BenchmarkDTLSHandshake, BenchmarkWebRTC{CallSetup,ConcurrentCalls,BrowserCallSetup} (-count $WR_COUNT)"
: >"$OUT/webrtc.txt"
timeout -k 10 300 go test -run '^$' -bench '^BenchmarkDTLSHandshake$' -benchtime 2s -count "$WR_COUNT" \
  ./protocols/webrtc/ >>"$OUT/webrtc.txt" 2>&1 || log "webrtc dtls benchmark failed (see $OUT/webrtc.txt)"
UCGATE_BIN="$BIN" timeout -k 10 600 go test -run '^$' -bench '^BenchmarkWebRTCCallSetup$' -benchtime "${WR_SETUPS}x" \
  -count "$WR_COUNT" ./e2e/ >>"$OUT/webrtc.txt" 2>&1 || log "webrtc setup benchmark failed (see $OUT/webrtc.txt)"
WEBRTC_BENCH_CALLS="$WR_CALLS" UCGATE_BIN="$BIN" timeout -k 10 600 go test -run '^$' -bench '^BenchmarkWebRTCConcurrentCalls$' \
  -benchtime 1x -count "$WR_COUNT" ./e2e/ >>"$OUT/webrtc.txt" 2>&1 || log "webrtc concurrency benchmark failed (see $OUT/webrtc.txt)"
if command -v chromium >/dev/null; then
  UCGATE_BIN="$BIN" timeout -k 10 600 go test -run '^$' -bench '^BenchmarkWebRTCBrowserCallSetup$' -benchtime "${WR_SETUPS}x" \
    -count "$WR_COUNT" ./e2e/ >>"$OUT/webrtc.txt" 2>&1 || log "webrtc browser benchmark failed (see $OUT/webrtc.txt)"
fi
wr_med() { # median of metric $2 of benchmark $1 (name without the -N suffix)
  awk -v m="$1" -v k="$2" '{ n = $1; sub(/-[0-9]+$/, "", n) } n == "Benchmark" m { for (i = 2; i < NF; i++) if ($(i + 1) == k) print $i }' "$OUT/webrtc.txt" \
    | median_lines
}
wr_ratio() { [[ -n $1 && -n $2 ]] && awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}' || echo -; }
{
  echo
  echo "== WebRTC: browsers through ucgate (medians of $WR_COUNT runs)"
  hs=$(wr_med DTLSHandshake handshakes/s)
  printf '  %-58s %s\n' "DTLS handshakes/s (client and gateway on one machine)" "${hs:--}"
  sw=$(wr_med WebRTCCallSetup/webrtc ms-setup-median); sp=$(wr_med WebRTCCallSetup/plain-sip ms-setup-median)
  printf '  %-58s %s\n' "INVITE to media, ms, pion browser over WS (median)" "${sw:--}" \
    "INVITE to media, ms, plain SIP over UDP (median)" "${sp:--}" \
    "  ratio WebRTC / plain SIP" "$(wr_ratio "$sw" "$sp")" \
    "INVITE to media, ms, Chromium over WSS (median)" "$(wr_med WebRTCBrowserCallSetup ms-setup-median)"
  cw=$(wr_med "WebRTCConcurrentCalls/webrtc/calls=$WR_CALLS" calls/core); cp=$(wr_med "WebRTCConcurrentCalls/plain-sip/calls=$WR_CALLS" calls/core)
  printf '  %-58s %s\n' "concurrent calls per core of gateway CPU, WebRTC ($WR_CALLS held)" "${cw:--}" \
    "concurrent calls per core of gateway CPU, plain SIP" "${cp:--}" \
    "  ratio WebRTC / plain SIP" "$(wr_ratio "$cw" "$cp")" \
    "gateway RSS KB per call, WebRTC" "$(wr_med "WebRTCConcurrentCalls/webrtc/calls=$WR_CALLS" KB-rss/call)" \
    "gateway RSS KB per call, plain SIP" "$(wr_med "WebRTCConcurrentCalls/plain-sip/calls=$WR_CALLS" KB-rss/call)" \
    "gateway RSS MB with the calls held, WebRTC" "$(wr_med "WebRTCConcurrentCalls/webrtc/calls=$WR_CALLS" MB-rss)"
  echo "  (pion's ICE agent paces its checks at 200 ms: the pion figure is bound by the client, Chromium's is not)"
} | tee -a "$OUT/figures.txt"
fi # webrtc

# ------------------------------- 2k. relay path to a browser, NACK cache on
if want feedback; then
# Plain RTP from the SIP side to a DTLS-SRTP leg, one packet through the
# relay's path: without the gateway's own RTCP, with a NACK cache of 256
# packets, and with the reports running too. Medians of ns/op and
# allocs/op, and the ratios to "off".
FB_COUNT=5; (( QUICK )) && FB_COUNT=1
log "media: BenchmarkRelayPathFeedback (-count $FB_COUNT)"
timeout -k 10 300 go test -run '^$' -bench '^BenchmarkRelayPathFeedback$' -benchtime 200000x -benchmem -count "$FB_COUNT" \
  ./core/media/ >"$OUT/feedback.txt" 2>&1 || log "feedback benchmark failed (see $OUT/feedback.txt)"
{
  echo
  echo "== relay path to a browser leg: NACK cache off/on (medians of $FB_COUNT runs)"
  awk '
    $1 ~ /^BenchmarkRelayPathFeedback\// {
      split($1, n, "/"); k = n[2]; sub(/-[0-9]+$/, "", k)
      for (i = 3; i < NF; i++) v[k, $(i + 1)] = v[k, $(i + 1)] " " $i
      seen[k] = 1
    }
    '"$AWK_MEDIAN"'
    END {
      printf "  %-18s %10s %10s %12s\n", "", "ns/packet", "allocs", "ratio/off"
      base = median(v["off", "ns/op"])
      for (k in seen) printf "  %-18s %10.0f %10.0f %12.2f\n", k, median(v[k, "ns/op"]), median(v[k, "allocs/op"]), (base > 0) ? median(v[k, "ns/op"]) / base : 0
    }' "$OUT/feedback.txt"
} | tee -a "$OUT/figures.txt"
fi # feedback

# ------------------------------- 2l. relay path of a transcoded direction
if want transform; then
# One plain RTP packet through the relay's path when its direction has a
# transform (core/media.Call.SetTransform, what transcoded video uses):
# handed over only, or handed over and sent on through TransformOut,
# beside the plain relay ("off"). Medians and ratios to "off".
TF_COUNT=5; (( QUICK )) && TF_COUNT=1
log "media: BenchmarkRelayPathTransform (-count $TF_COUNT)"
timeout -k 10 300 go test -run '^$' -bench '^BenchmarkRelayPathTransform$' -benchtime 200000x -benchmem -count "$TF_COUNT" \
  ./core/media/ >"$OUT/transform.txt" 2>&1 || log "transform benchmark failed (see $OUT/transform.txt)"
{
  echo
  echo "== relay path of a transcoded direction: handoff to the transform (medians of $TF_COUNT runs)"
  awk '
    $1 ~ /^BenchmarkRelayPathTransform\// {
      split($1, n, "/"); k = n[2]; sub(/-[0-9]+$/, "", k)
      for (i = 3; i < NF; i++) v[k, $(i + 1)] = v[k, $(i + 1)] " " $i
      seen[k] = 1
    }
    '"$AWK_MEDIAN"'
    END {
      printf "  %-18s %10s %10s %12s\n", "", "ns/packet", "allocs", "ratio/off"
      base = median(v["off", "ns/op"])
      for (k in seen) printf "  %-18s %10.0f %10.0f %12.2f\n", k, median(v[k, "ns/op"]), median(v[k, "allocs/op"]), (base > 0) ? median(v[k, "ns/op"]) / base : 0
    }' "$OUT/transform.txt"
} | tee -a "$OUT/figures.txt"
fi # transform

# ------------------------------------------------------ 3. Go benchmarks
if want go; then
# median_table FILE: median ns/op, B/op and allocs/op per benchmark of a
# "go test -bench" output (when benchstat cannot be run).
median_table() {
  awk '
    $1 ~ /^Benchmark/ && $4 == "ns/op" {
      name = $1; if (!(name in seen)) { order[++n] = name; seen[name] = 1 }
      for (i = 3; i < NF; i++) {
        if ($(i + 1) == "ns/op") ns[name] = ns[name] " " $i
        if ($(i + 1) == "B/op") by[name] = by[name] " " $i
        if ($(i + 1) == "allocs/op") al[name] = al[name] " " $i
      }
    }
    '"$AWK_MEDIAN"'
    END {
      printf "%-60s %14s %12s %12s\n", "benchmark", "ns/op", "B/op", "allocs/op"
      for (i = 1; i <= n; i++) printf "%-60s %14s %12s %12s\n", order[i], median(ns[order[i]], "-"), median(by[order[i]], "-"), median(al[order[i]], "-")
    }' "$1"
}

mapfile -t BPKGS < <(grep -rlE --include='*_test.go' --exclude-dir=testdata --exclude-dir=vendor \
  '^func Benchmark[A-Za-z0-9_]*\(' . 2>/dev/null | xargs -r -n1 dirname | sort -u)
GO_RC=0
if (( ${#BPKGS[@]} == 0 )); then
  echo "bench: no Go benchmarks in the repository yet"
else
  COUNT=5; BT=1s
  (( QUICK )) && { COUNT=1; BT=200ms; }
  # One package at a time, each bounded by twice its fair share of the time
  # left (the whole bench ends by BENCH_BUDGET seconds); a package cut short
  # keeps the results it printed.
  GO_END=$(( T0 + ${BENCH_BUDGET:-1440} ))
  log "go benchmarks in ${BPKGS[*]} (-count $COUNT -benchtime $BT, until +$(( GO_END - T0 ))s)"
  : >"$OUT/gobench.txt"
  left=${#BPKGS[@]}; CUT=(); FAILED=()
  for pkg in "${BPKGS[@]}"; do
    rem=$(( GO_END - $(date +%s) ))
    if (( rem < 20 )); then CUT+=("$pkg(skipped)"); left=$(( left - 1 )); continue; fi
    share=$(( rem * 2 / left )); (( share > rem )) && share=$rem
    timeout -k 10 "$share" go test -run '^$' -bench . -benchmem -benchtime "$BT" -count "$COUNT" "$pkg" \
      >>"$OUT/gobench.txt" 2>&1
    rc=$?
    case $rc in
      0) ;;
      124|137) CUT+=("$pkg(cut at ${share}s)"); echo >>"$OUT/gobench.txt" ;;
      *) FAILED+=("$pkg"); GO_RC=$rc ;;
    esac
    left=$(( left - 1 ))
  done
  (( ${#CUT[@]} == 0 )) || log "go benchmarks cut short by the time budget: ${CUT[*]}"
  (( ${#FAILED[@]} == 0 )) || { grep -E -- '^(--- FAIL|FAIL|panic)|_test.go:[0-9]+' "$OUT/gobench.txt" | head -20; log "go benchmarks failed in ${FAILED[*]}"; }
  echo
  echo "== Go benchmarks (medians of $COUNT runs; raw output in $OUT/gobench.txt)"
  if ! timeout 300 go run "$BENCHSTAT" "$OUT/gobench.txt" 2>"$OUT/benchstat.err"; then
    echo "(benchstat unavailable: $(head -c 200 "$OUT/benchstat.err"); awk medians)"
    median_table "$OUT/gobench.txt"
  fi
fi
fi # go

echo
[[ -s $OUT/figures.txt ]] && cat "$OUT/figures.txt"
log "done in $(( $(date +%s) - T0 )) s; results in $OUT"
(( SIP_RC == 0 && GO_RC == 0 ))
