// ucgate softphone: register, call, hang up, call state and audio levels.
// URL parameters (for demos and tests) preset the fields and can drive
// the page without clicks: server, uri, password, target, auto=1
// (register, then call target if set), answer=1 (answer incoming calls),
// hangup_after=ms, report=URL (POSTs every state change as JSON),
// video=1 (a camera too; video_codec=VP8 restricts it to one codec, as a
// browser that has only that codec would: RTCRtpTransceiver.
// setCodecPreferences for what it offers and answers, and the other video
// codecs of a remote offer are ignored, since Chromium would otherwise
// send the offer's first codec whatever its answer said).
import JsSIP from 'jssip';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let ua = null;
let session = null;
let stats = null;
const levels = { mic: 0, remote: 0, micMax: 0, remoteMax: 0 };

function report(event, extra) {
  const url = params.get('report');
  const body = JSON.stringify(Object.assign({ event, time: Date.now() }, extra || {}));
  console.log('[phone]', body);
  if (url) {
    fetch(url, { method: 'POST', mode: 'no-cors', headers: { 'Content-Type': 'text/plain' }, body }).catch(() => {});
  }
}

function setState(text, event, extra) {
  $('state').textContent = text;
  report(event || text, extra);
}

function buttons() {
  const reg = ua && ua.isRegistered();
  $('register').disabled = !!ua;
  $('unregister').disabled = !ua;
  $('call').disabled = !reg || !!session;
  $('hangup').disabled = !session;
  $('answer').disabled = !(session && session.direction === 'incoming' && !session.isEstablished());
}

// meter follows a stream's level with an AnalyserNode.
function meter(stream, key, el) {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (!Ctx) return;
  const ctx = new Ctx();
  const src = ctx.createMediaStreamSource(stream);
  const an = ctx.createAnalyser();
  an.fftSize = 1024;
  src.connect(an);
  const buf = new Float32Array(an.fftSize);
  const tick = () => {
    an.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const v of buf) sum += v * v;
    const rms = Math.sqrt(sum / buf.length);
    levels[key] = rms;
    levels[key + 'Max'] = Math.max(levels[key + 'Max'], rms);
    el.value = Math.min(1, rms * 4);
    if (ctx.state !== 'closed') setTimeout(tick, 50);
  };
  ctx.resume().catch(() => {});
  tick();
  return ctx;
}

async function rtpStats(pc) {
  const out = { sent: 0, received: 0, bytesSent: 0, bytesReceived: 0, codec: '', pair: '' };
  if (!pc) return out;
  const report = await pc.getStats();
  const codecs = {};
  report.forEach((s) => { if (s.type === 'codec') codecs[s.id] = s.mimeType; });
  // The ICE pair in use: where the media goes.
  report.forEach((s) => {
    if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
      const l = report.get(s.localCandidateId), r = report.get(s.remoteCandidateId);
      if (l && r) out.pair = (l.address || l.ip) + ' ' + l.port + ' -> ' + (r.address || r.ip) + ' ' + r.port;
    }
  });
  // Video: frames sent and decoded, the codecs, and how the remote
  // picture looks (mean and spread of its luma: a blank picture has
  // none).
  const v = { framesSent: 0, framesDecoded: 0, codecOut: '', codecIn: '', width: 0, height: 0 };
  report.forEach((s) => {
    if (s.kind !== 'video') return;
    if (s.type === 'outbound-rtp') { v.framesSent += s.framesSent || s.framesEncoded || 0; v.codecOut = codecs[s.codecId] || v.codecOut; }
    if (s.type === 'inbound-rtp') {
      v.framesDecoded += s.framesDecoded || 0; v.codecIn = codecs[s.codecId] || v.codecIn;
      v.width = s.frameWidth || v.width; v.height = s.frameHeight || v.height;
    }
  });
  Object.assign(v, picture());
  out.video = v;
  report.forEach((s) => {
    if (s.kind !== 'audio') return;
    if (s.type === 'outbound-rtp') { out.sent += s.packetsSent || 0; out.bytesSent += s.bytesSent || 0; out.codec = codecs[s.codecId] || out.codec; }
    if (s.type === 'inbound-rtp') { out.received += s.packetsReceived || 0; out.bytesReceived += s.bytesReceived || 0; }
  });
  return out;
}

// preferCodec restricts the video transceivers of pc to one codec (by
// name: VP8, H264) before every offer and answer JsSIP makes.
function preferCodec(pc, name) {
  const want = 'video/' + name.toLowerCase();
  const apply = () => {
    const caps = (RTCRtpReceiver.getCapabilities('video') || { codecs: [] }).codecs
      .filter((c) => c.mimeType.toLowerCase() === want);
    pc.getTransceivers().forEach((t) => {
      const kind = (t.receiver && t.receiver.track && t.receiver.track.kind) || (t.sender.track && t.sender.track.kind);
      if (kind === 'video' && caps.length) t.setCodecPreferences(caps);
    });
  };
  for (const m of ['createOffer', 'createAnswer']) {
    const orig = pc[m].bind(pc);
    pc[m] = (...a) => { apply(); return orig(...a); };
  }
}

// onlyVideoCodec keeps, in the video streams of a description, the
// payload types of codec name (and their retransmissions) only.
function onlyVideoCodec(sdp, name) {
  const parts = sdp.split(/(?=^m=)/m);
  return parts.map((part) => {
    if (!part.startsWith('m=video')) return part;
    const lines = part.split(/\r?\n/);
    const keep = new Set();
    for (const l of lines) {
      const m = /^a=rtpmap:(\d+) ([^/]+)\//.exec(l);
      if (m && m[2].toLowerCase() === name.toLowerCase()) keep.add(m[1]);
    }
    for (const l of lines) {
      const m = /^a=fmtp:(\d+) apt=(\d+)/.exec(l);
      if (m && keep.has(m[2])) keep.add(m[1]);
    }
    if (!keep.size) return part;
    return lines.map((l) => {
      if (l.startsWith('m=video')) {
        const f = l.split(' ');
        return f.slice(0, 3).concat(f.slice(3).filter((pt) => keep.has(pt))).join(' ');
      }
      const m = /^a=(rtpmap|fmtp|rtcp-fb):(\d+)/.exec(l);
      return m && !keep.has(m[2]) ? null : l;
    }).filter((l) => l !== null).join('\r\n');
  }).join('');
}

// remoteVideo is the element that shows the remote camera.
function remoteVideo() {
  let v = $('remoteVideo');
  if (!v) {
    v = document.createElement('video');
    v.id = 'remoteVideo'; v.autoplay = true; v.muted = true; v.playsInline = true; v.width = 320;
    document.body.appendChild(v);
  }
  return v;
}

// picture measures the remote video as drawn on a canvas: the mean and
// standard deviation of its luma (0-255).
function picture() {
  const v = $('remoteVideo');
  if (!v || !v.videoWidth) return { luma: 0, lumaStd: 0 };
  const c = document.createElement('canvas');
  c.width = 160; c.height = 120;
  const g = c.getContext('2d');
  g.drawImage(v, 0, 0, c.width, c.height);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let sum = 0, sq = 0;
  const n = d.length / 4;
  for (let i = 0; i < d.length; i += 4) {
    const y = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
    sum += y; sq += y * y;
  }
  const mean = sum / n;
  return { luma: Math.round(mean), lumaStd: Math.round(Math.sqrt(Math.max(0, sq / n - mean * mean))) };
}

function watch(s) {
  session = s;
  buttons();
  let ctxs = [];
  const attach = () => {
    const pc = s.connection;
    if (!pc) return;
    if (params.get('video_codec')) preferCodec(pc, params.get('video_codec'));
    pc.addEventListener('track', (e) => {
      const stream = e.streams[0] || new MediaStream([e.track]);
      if (e.track.kind === 'video') { remoteVideo().srcObject = stream; return; }
      $('remote').srcObject = stream;
      ctxs.push(meter(stream, 'remote', $('remoteLevel')));
    });
  };
  if (s.connection) attach(); else s.on('peerconnection', attach);
  // tamper_fingerprint=1 (tests only) announces a DTLS fingerprint that is
  // not the browser's: the gateway must refuse the handshake.
  s.on('sdp', (e) => {
    if (e.originator === 'local' && params.get('report')) {
      report('candidates', { cause: e.sdp.split(/\r?\n/).filter((l) => l.startsWith('a=candidate')).join(' | ') });
    }
    if (params.get('video_codec') && e.originator === 'remote' && e.type === 'offer') {
      e.sdp = onlyVideoCodec(e.sdp, params.get('video_codec'));
    }
    if (params.get('tamper_fingerprint') === '1' && e.originator === 'local') {
      const fake = Array.from(crypto.getRandomValues(new Uint8Array(32)), (b) => b.toString(16).padStart(2, '0').toUpperCase()).join(':');
      e.sdp = e.sdp.replace(/a=fingerprint:sha-256 [0-9A-Fa-f:]+/g, 'a=fingerprint:sha-256 ' + fake);
    }
  });
  s.on('sending', () => { callStart = performance.now(); });
  s.on('progress', () => setState('ringing', 'progress'));
  s.on('accepted', () => setState('answered', 'accepted'));
  s.on('confirmed', () => {
    setState('in call with ' + s.remote_identity.uri.toString(), 'confirmed');
    // The first packet received: media flows (reported with the time
    // since the INVITE was sent).
    const t0 = callStart;
    const poll = setInterval(async () => {
      if (!s.connection || s.isEnded()) { clearInterval(poll); return; }
      const st = await rtpStats(s.connection);
      if (st.received > 0) {
        clearInterval(poll);
        report('media', { ms: t0 ? Math.round(performance.now() - t0) : 0 });
      }
    }, 5);
    const local = s.connection.getSenders().map((x) => x.track).filter(Boolean);
    if (local.length) ctxs.push(meter(new MediaStream(local), 'mic', $('micLevel')));
    stats = setInterval(async () => {
      const st = await rtpStats(s.connection);
      report('stats', { rtp: st, levels });
    }, 1000);
    // hold_at=ms (tests): put the call on hold then, and take it back a
    // second later (two re-INVITEs).
    const holdAt = Number(params.get('hold_at') || 0);
    if (holdAt > 0) {
      setTimeout(() => { if (!s.isEnded()) { s.hold(); report('hold'); } }, holdAt);
      setTimeout(() => { if (!s.isEnded()) { s.unhold(); report('unhold'); } }, holdAt + 1000);
    }
    const after = Number(params.get('hangup_after') || 0);
    if (after > 0) {
      setTimeout(async () => {
        const st = await rtpStats(s.connection);
        report('final', { rtp: st, levels });
        s.terminate();
      }, after);
    }
  });
  const done = (what) => (e) => {
    clearInterval(stats);
    ctxs.forEach((c) => c && c.close());
    ctxs = [];
    session = null;
    buttons();
    setState(what + ': ' + (e && e.cause ? e.cause : ''), what, { cause: e && e.cause, code: e && e.message && e.message.status_code });
  };
  s.on('ended', (e) => {
    done('ended')(e);
    // repeat=N (benchmarks): call target again until N calls were made.
    if (s.direction === 'outgoing' && calls < Number(params.get('repeat') || 1)) setTimeout(call, 50);
  });
  s.on('failed', done('failed'));
}

// processing=0 turns off echo cancellation, noise suppression and gain
// control (a test tone passes unchanged).
const audio = params.get('processing') === '0'
  ? { echoCancellation: false, noiseSuppression: false, autoGainControl: false }
  : true;
const callOptions = () => ({
  mediaConstraints: { audio, video: params.get('video') === '1' },
  pcConfig: { iceServers: [] },
});

function start() {
  const server = $('server').value.trim();
  const socket = new JsSIP.WebSocketInterface(server);
  ua = new JsSIP.UA({
    sockets: [socket],
    uri: $('uri').value.trim(),
    password: $('password').value || undefined,
    register: true,
    session_timers: false,
    user_agent: 'ucgate-softphone (JsSIP ' + JsSIP.version + ')',
  });
  ua.on('connected', () => report('connected', { server }));
  ua.on('disconnected', () => setState('disconnected from ' + server, 'disconnected'));
  ua.on('registered', () => {
    setState('registered as ' + $('uri').value, 'registered');
    buttons();
    if (params.get('auto') === '1' && params.get('target')) call();
  });
  ua.on('registrationFailed', (e) => {
    setState('registration failed: ' + e.cause, 'registrationFailed', { cause: e.cause, code: e.response && e.response.status_code });
    buttons();
  });
  ua.on('newRTCSession', (e) => {
    if (e.originator !== 'remote') return;
    if (session) { e.session.terminate({ status_code: 486 }); return; }
    watch(e.session);
    setState('incoming call from ' + e.session.remote_identity.uri.toString(), 'incoming');
    if (params.get('answer') === '1') e.session.answer(callOptions());
  });
  ua.start();
  buttons();
}

let callStart = 0;
let calls = 0;

function call() {
  const target = $('target').value.trim();
  calls++;
  callStart = performance.now();
  setState('calling ' + target, 'calling', { target });
  const s = ua.call(target, Object.assign({ eventHandlers: {} }, callOptions()));
  watch(s);
}

async function defaults() {
  let cfg = {};
  try {
    const res = await fetch('config.json');
    if (res.ok) cfg = await res.json();
  } catch (e) { /* served without the gateway */ }
  const secure = location.protocol === 'https:';
  $('server').value = params.get('server') || (secure ? cfg.wss : cfg.ws) || cfg.wss || cfg.ws || '';
  $('uri').value = params.get('uri') || cfg.uri || 'sip:webphone@127.0.0.1';
  $('password').value = params.get('password') || '';
  $('target').value = params.get('target') || cfg.target || 'sip:echo@127.0.0.1';
}

$('register').onclick = start;
$('unregister').onclick = () => { if (ua) { ua.stop(); ua = null; buttons(); setState('not registered', 'unregistered'); } };
$('call').onclick = call;
$('hangup').onclick = () => session && session.terminate();
$('answer').onclick = () => session && session.answer(callOptions());
window.ucgatePhone = { levels, get session() { return session; }, JsSIP };

defaults().then(() => {
  report('loaded', { jssip: JsSIP.version });
  if (params.get('auto') === '1') start();
});
