package sip

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/ucgate/ucgate/core"
)

// binding is a user agent registered through the gateway: where its
// registrar knows it (a token Contact on the gateway) and where the
// gateway really reaches it (the address and connection it registered
// from, which is what gets a call to a phone behind NAT).
type binding struct {
	token     string  // user part of the Contact the registrar holds
	aor       sip.Uri // address of record (To of the REGISTER)
	contact   sip.Uri // the user agent's own Contact
	src       netip.AddrPort
	transport string // upper case
	l         *listener
	natted    bool
	expires   time.Time
	// regCallID is the Call-ID the gateway uses toward the registrar for
	// this user agent's registrations; regCSeq its last CSeq.
	regCallID string
	regCSeq   uint32
}

// bindingTable holds the bindings by token, by address of record and by
// the user agent's own registration Call-ID.
type bindingTable struct {
	mu       sync.RWMutex
	byToken  map[string]*binding
	byUser   map[string][]*binding // lower-case AOR user
	byCallID map[string]*binding   // the user agent's Call-ID + contact
}

func newBindingTable() *bindingTable {
	return &bindingTable{byToken: map[string]*binding{}, byUser: map[string][]*binding{}, byCallID: map[string]*binding{}}
}

// lookup finds a live binding for a Request-URI user: by the token the
// registrar was given, or (byAOR) by the user of the address of record.
func (t *bindingTable) lookup(user string, byAOR bool) *binding {
	if user == "" {
		return nil
	}
	now := time.Now()
	t.mu.RLock()
	defer t.mu.RUnlock()
	if b := t.byToken[user]; b != nil && b.expires.After(now) {
		return b
	}
	if !byAOR {
		return nil
	}
	var best *binding
	for _, b := range t.byUser[strings.ToLower(user)] {
		if b.expires.After(now) && (best == nil || b.expires.After(best.expires)) {
			best = b
		}
	}
	return best
}

func (t *bindingTable) byRegistration(key string) *binding {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.byCallID[key]
}

func (t *bindingTable) put(key string, b *binding) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.byToken[b.token]; !ok {
		u := strings.ToLower(b.aor.User)
		t.byUser[u] = append(t.byUser[u], b)
	}
	t.byToken[b.token] = b
	t.byCallID[key] = b
}

func (t *bindingTable) remove(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.byCallID[key]
	if b == nil {
		return
	}
	t.removeLocked(key, b)
}

func (t *bindingTable) removeLocked(key string, b *binding) {
	delete(t.byCallID, key)
	delete(t.byToken, b.token)
	u := strings.ToLower(b.aor.User)
	list := t.byUser[u]
	for i, x := range list {
		if x == b {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(t.byUser, u)
	} else {
		t.byUser[u] = list
	}
}

func (t *bindingTable) count() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.byToken)
}

// expireLoop drops bindings whose registration lapsed.
func (t *bindingTable) expireLoop(ctx context.Context) {
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			t.mu.Lock()
			for k, b := range t.byCallID {
				if now.After(b.expires.Add(30 * time.Second)) {
					t.removeLocked(k, b)
				}
			}
			t.mu.Unlock()
		}
	}
}

func randomToken(prefix string, n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// newCallID is a Call-ID for a leg the gateway starts: the time in
// milliseconds then 12 random bytes, so that the journal's call-id index
// grows by appending.
func newCallID() string {
	return strconv.FormatInt(time.Now().UnixMilli(), 16) + randomToken("", 12)
}

// onRegister relays a REGISTER to the registrar with the gateway's own
// Contact, and keeps the binding when the registrar accepts it.
func (a *Adapter) onRegister(req *sip.Request, tx sip.ServerTransaction) {
	in := a.inboundOf(req, tx)
	ev := a.event(in, core.KindRegister)
	if !a.run(in, ev) {
		return
	}
	if a.registrar == nil {
		a.refuse(in, core.RefuseWith(core.ReasonUnsupported, "sip/no_registrar", ""), "sip")
		return
	}
	up := a.registrar
	to := req.To()
	contacts := contactsOf(req)
	key := req.CallID().Value()
	if len(contacts) > 0 && !contacts[0].Address.Wildcard {
		key += "|" + contacts[0].Address.String()
	}
	expires := -1
	if h := req.GetHeader("Expires"); h != nil {
		if v, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil {
			expires = v
		}
	}
	if len(contacts) > 1 {
		a.refuse(in, core.RefuseWith(core.ReasonMalformed, "sip/register_contacts", "One Contact Per Registration"), "sip")
		return
	}

	b := a.bindings.byRegistration(key)
	if b == nil && len(contacts) == 1 && !contacts[0].Address.Wildcard {
		b = &binding{token: randomToken("u", 8), regCallID: newCallID(), regCSeq: 1}
	}
	if b == nil {
		// A query (no Contact) or a wildcard removal for an unknown
		// registration: relay with a fresh Call-ID.
		b = &binding{token: randomToken("u", 8), regCallID: newCallID()}
	}
	lu := &leg{
		callID:    b.regCallID,
		localTag:  sip.GenerateTagN(16),
		local:     sip.Uri{Scheme: "sip", User: to.Address.User, Host: to.Address.Host},
		localName: to.DisplayName,
		remote:    sip.Uri{Scheme: "sip", User: to.Address.User, Host: to.Address.Host},
		remoteNm:  to.DisplayName,
		transport: up.transport,
		dest:      up.addr,
		l:         a.listenerFor(up),
	}
	if lu.l == nil {
		lu.l = in.l
	}
	host, port := splitHostPort(up.addr)
	lu.target = sip.Uri{Scheme: "sip", Host: host, Port: port}
	if up.cfg.Domain != "" {
		lu.target = sip.Uri{Scheme: "sip", Host: up.domain}
	}
	b.regCSeq++
	out := lu.request(sip.REGISTER, b.regCSeq)
	a.copyRequest(req, out)
	out.AppendHeader(sip.NewHeader("User-Agent", a.cfg.UserAgent))
	for _, c := range contacts {
		ch := &sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: b.token, Host: lu.l.host, Port: lu.l.port}}
		if c.Address.Wildcard {
			ch = &sip.ContactHeader{Address: sip.Uri{Wildcard: true}}
		} else {
			if lu.l.transport != "udp" {
				ch.Address.UriParams = sip.HeaderParams{{K: "transport", V: lu.l.transport}}
			}
			if e, ok := c.Params.Get("expires"); ok {
				if v, err := strconv.Atoi(e); err == nil {
					ch.Params = sip.HeaderParams{{K: "expires", V: strconv.Itoa(min(v, a.cfg.RegistrationMaxExpires))}}
				}
			}
		}
		out.AppendHeader(ch)
	}
	out.SetBody(nil)
	in.rec.PeerCall = b.regCallID

	ctx, cancel := context.WithTimeout(a.ctx, 64*sip.T1)
	defer cancel()
	res, err := a.cli.Do(ctx, out, noBuild)
	if err != nil {
		in.rec.Detail = "registrar unreachable"
		a.respond(in, sip.NewResponseFromRequest(req, 408, "Request Timeout", nil))
		return
	}
	resA := sip.NewResponseFromRequest(req, res.StatusCode, res.Reason, nil)
	copySafe(res, resA, safeResponseHeaders)
	if res.StatusCode >= 200 && res.StatusCode < 300 {
		granted := -1
		for _, h := range res.GetHeaders("Contact") {
			ch, ok := h.(*sip.ContactHeader)
			if !ok || ch.Address.User != b.token {
				continue
			}
			granted = expires
			if e, ok := ch.Params.Get("expires"); ok {
				granted, _ = strconv.Atoi(e)
			}
		}
		if granted < 0 && expires >= 0 && len(contacts) == 1 {
			granted = expires
		}
		if len(contacts) == 1 && !contacts[0].Address.Wildcard && granted > 0 {
			b.aor = sip.Uri{Scheme: "sip", User: to.Address.User, Host: to.Address.Host}
			b.contact = *contacts[0].Address.Clone()
			b.src = in.src
			b.transport = strings.ToUpper(req.Transport())
			b.l = in.l
			b.natted = behindNAT(req, in.src, nil) || contactHost(contacts[0]) != in.src.Addr()
			b.expires = time.Now().Add(time.Duration(granted) * time.Second)
			a.bindings.put(key, b)
			ca := contacts[0].Clone()
			ca.Params = sip.HeaderParams{{K: "expires", V: strconv.Itoa(granted)}}
			resA.AppendHeader(ca)
		} else if len(contacts) == 1 {
			a.bindings.remove(key)
		}
		a.metrics.registered.Set(float64(a.bindings.count()))
	} else if b.aor.User != "" {
		// Keep the CSeq for the retry with credentials.
		a.bindings.put(key, b)
	}
	a.respond(in, resA)
}

// contactHost is the IP a Contact names, if it names one.
func contactHost(c *sip.ContactHeader) netip.Addr {
	ip, _ := netip.ParseAddr(trimBrackets(c.Address.Host))
	return ip.Unmap()
}

func contactsOf(m sip.Message) []*sip.ContactHeader {
	var out []*sip.ContactHeader
	for _, h := range m.GetHeaders("Contact") {
		if ch, ok := h.(*sip.ContactHeader); ok {
			out = append(out, ch)
		}
	}
	return out
}
