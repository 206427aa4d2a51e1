package proxy

import (
	"time"

	"mellium.im/xmpp/jid"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/protocols/xmpp/wire"
)

// capture keeps a message the client sent, as the capture policy says,
// when the journal can keep messages.
func (c *conn) capture(el *wire.Element, to jid.JID) {
	if !c.p.cfg.Capture.Enabled {
		return
	}
	mj, ok := c.p.deps.Journal.(core.MessageJournal)
	if !ok {
		return
	}
	body := el.Child(nsClient, "body")
	if body == nil {
		return
	}
	m := &core.CapturedMessage{Time: time.Now(), Protocol: "xmpp", Src: c.src.String(), Encrypted: c.encrypted,
		From: c.account().String(), To: to.String(), ID: el.Get("id"), Type: el.Get("type"), Size: len(body.Text)}
	if c.p.cfg.Capture.Body {
		m.Body = body.Text
	}
	mj.Message(m)
}
