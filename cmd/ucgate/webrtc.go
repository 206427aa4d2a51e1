package main

import (
	"embed"
	"io/fs"
	"net/http"
	"net/netip"
	"strings"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/core/media"
	"github.com/ucgate/ucgate/protocols/sip"
	"github.com/ucgate/ucgate/protocols/webrtc"
)

// softphone holds the browser softphone: build/ is what `make build`
// bundles from web/softphone (not in the repository), placeholder.html
// what a plain `go build` serves instead.
//
//go:embed softphone
var softphone embed.FS

// rtcLegs joins protocols/webrtc to the SIP adapter's interface.
type rtcLegs struct{ *webrtc.Legs }

func (r rtcLegs) NewLeg(session core.SessionID, role string, call *media.Call, src netip.AddrPort, zone string, onFail func(rule, detail string)) sip.WebRTCLeg {
	return r.Legs.NewLeg(session, role, call, src, zone, onFail)
}

// startWebRTC makes the WebRTC side when browsers may call: it needs the
// media relay, which carries their DTLS-SRTP.
func (gw *gateway) startWebRTC(cfg Config) (sip.WebRTC, error) {
	if !cfg.WebRTC.Enabled || gw.media == nil {
		return nil, nil
	}
	l, err := webrtc.New(cfg.WebRTC, gw.pipe.deps)
	if err != nil {
		return nil, err
	}
	gw.rtc = l
	return rtcLegs{l}, nil
}

// phoneRoutes serves the softphone at /phone/ and, at /phone/config.json,
// the WebSocket listeners it may use and the demo's number.
func (gw *gateway) phoneRoutes(mux *http.ServeMux) {
	root, err := fs.Sub(softphone, "softphone/build")
	if _, statErr := fs.Stat(softphone, "softphone/build/index.html"); err == nil && statErr == nil {
		mux.Handle("GET /phone/", http.StripPrefix("/phone/", http.FileServer(http.FS(root))))
	} else {
		page, _ := softphone.ReadFile("softphone/placeholder.html")
		mux.HandleFunc("GET /phone/{$}", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write(page)
		})
	}
	mux.HandleFunc("GET /phone/config.json", func(w http.ResponseWriter, _ *http.Request) {
		out := map[string]string{}
		for _, l := range gw.sip.Listeners() {
			tr, addr, _ := strings.Cut(l, "/")
			if (tr == "ws" || tr == "wss") && out[tr] == "" {
				out[tr] = tr + "://" + addr
			}
			if tr == "udp" && out["target"] == "" {
				ap, err := netip.ParseAddrPort(addr)
				if err == nil && ap.Addr().Is4() {
					out["target"] = "sip:echo@" + ap.Addr().String()
					out["uri"] = "sip:webphone@" + ap.Addr().String()
				}
			}
		}
		writeJSON(w, out)
	})
}
