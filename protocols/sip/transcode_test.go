package sip

import (
	"strings"
	"testing"
)

const vp8Offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
	"m=audio 4000 RTP/AVP 111 0\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n" +
	"m=video 4002 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack pli\r\n"

const h264Answer = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
	"m=audio 5000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n" +
	"m=video 5002 RTP/AVP 127\r\na=rtpmap:127 H264/90000\r\na=fmtp:127 profile-level-id=42e01f;packetization-mode=1\r\n"

func TestTranscodeOfferAddsTheOtherCodec(t *testing.T) {
	out, added, err := tcOffer([]byte(vp8Offer))
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	if !strings.Contains(s, "m=video 4002 RTP/AVP 96 127\r\n") || !strings.Contains(s, "a=rtpmap:127 H264/90000") ||
		!strings.Contains(s, "a=fmtp:127 profile-level-id=42e01f;packetization-mode=1") {
		t.Fatalf("offer without H.264 added:\n%s", s)
	}
	if !strings.Contains(s, "m=audio 4000 RTP/AVP 111 0\r\n") {
		t.Fatalf("audio changed:\n%s", s)
	}
	o, ok := added[1]
	if len(added) != 1 || !ok || o.own.Name != "VP8" || o.own.PT != 96 || o.added.Name != "H264" || o.added.PT != 127 {
		t.Fatalf("added %+v", added)
	}

	// Answered with H.264 only: transcoded, the offerer told VP8.
	back, plans, err := tcAnswer([]byte(h264Answer), added)
	if err != nil {
		t.Fatal(err)
	}
	if len(plans) != 1 || plans[0].index != 1 || plans[0].offerer.PT != 96 || plans[0].answerer.PT != 127 || plans[0].answerer.Name != "H264" {
		t.Fatalf("plans %+v", plans)
	}
	b := string(back)
	if !strings.Contains(b, "m=video 5002 RTP/AVP 96\r\n") || !strings.Contains(b, "a=rtpmap:96 VP8/90000") || strings.Contains(b, "H264") {
		t.Fatalf("answer for the offerer:\n%s", b)
	}

	// Answered with VP8 and H.264: relayed, the added codec taken out.
	both := strings.Replace(h264Answer, "RTP/AVP 127\r\n", "RTP/AVP 96 127\r\na=rtpmap:96 VP8/90000\r\n", 1)
	back, plans, err = tcAnswer([]byte(both), added)
	if err != nil || len(plans) != 0 {
		t.Fatalf("plans %+v err %v", plans, err)
	}
	if b := string(back); !strings.Contains(b, "m=video 5002 RTP/AVP 96\r\n") || strings.Contains(b, "H264") {
		t.Fatalf("answer for the offerer:\n%s", b)
	}

	// Video refused: nothing to do.
	refused := strings.Replace(h264Answer, "m=video 5002", "m=video 0", 1)
	if back, plans, err = tcAnswer([]byte(refused), added); err != nil || len(plans) != 0 || string(back) != refused {
		t.Fatalf("refused video: plans %+v err %v", plans, err)
	}
}

func TestTranscodeOfferH264GetsVP8(t *testing.T) {
	out, added, err := tcOffer([]byte(h264Answer))
	if err != nil {
		t.Fatal(err)
	}
	if o := added[1]; o.own.Name != "H264" || o.added.Name != "VP8" || o.added.PT != 126 ||
		!strings.Contains(string(out), "m=video 5002 RTP/AVP 127 126\r\n") {
		t.Fatalf("added %+v\n%s", added, out)
	}
	// H.264 in packetization mode 0 is not the transcoder's: nothing added.
	mode0 := strings.Replace(h264Answer, "packetization-mode=1", "packetization-mode=0", 1)
	if _, added, err := tcOffer([]byte(mode0)); err != nil || len(added) != 0 {
		t.Fatalf("mode 0: added %+v err %v", added, err)
	}
	// Both codecs offered: nothing added.
	both := strings.Replace(vp8Offer, "RTP/AVP 96\r\n", "RTP/AVP 96 97\r\na=rtpmap:97 H264/90000\r\na=fmtp:97 packetization-mode=1\r\n", 1)
	if _, added, err := tcOffer([]byte(both)); err != nil || len(added) != 0 {
		t.Fatalf("both: added %+v err %v", added, err)
	}
}

// FuzzTranscodeSDP: descriptions from the network through the offer and
// answer rewriting never panic, and what comes out parses again.
func FuzzTranscodeSDP(f *testing.F) {
	f.Add([]byte(vp8Offer), []byte(h264Answer))
	f.Add([]byte(h264Answer), []byte(vp8Offer))
	f.Fuzz(func(t *testing.T, offer, answer []byte) {
		if len(offer) > maxSDP || len(answer) > maxSDP {
			return
		}
		out, added, err := tcOffer(offer)
		if err != nil || len(added) == 0 {
			return
		}
		if _, err := mediaFromSDP(out); err != nil {
			t.Fatalf("offer does not parse again: %v\n%s", err, out)
		}
		back, _, err := tcAnswer(answer, added)
		if err != nil {
			return
		}
		if _, err := mediaFromSDP(back); err != nil && string(back) != string(answer) {
			t.Fatalf("answer does not parse again: %v\n%s", err, back)
		}
	})
}
