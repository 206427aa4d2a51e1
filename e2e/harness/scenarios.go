package harness

// sipp scenarios for tests. Each is a complete XML document for
// SippConfig.ScenarioXML. They copy Via/From/To/Call-ID/CSeq from the
// request they answer and echo Record-Route, so they work directly and
// through a proxy such as ucgate. None ends with a pause, so a TCP UAS does
// not count the caller's closed connection as a failure (PEERS.md 1.1).

// ScenarioUASRingAnswer is a UAS that answers INVITE with 180 then 200 (with
// SDP), waits for ACK and BYE, and answers the BYE with 200.
const ScenarioUASRingAnswer = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="UAS: 180, 200, wait for BYE">
  <recv request="INVITE" />
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

    ]]>
  </send>
  <recv request="ACK" />
  <recv request="BYE" />
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
`

// ScenarioUASRingNoAnswer is a UAS that answers INVITE with 180 and never
// answers: it waits for CANCEL, answers it with 200, sends 487 for the
// INVITE and waits for the ACK. Pair it with [ScenarioUACCancel].
const ScenarioUASRingNoAnswer = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="UAS: 180, then 200 to CANCEL and 487 to INVITE">
  <recv request="INVITE">
    <action>
      <ereg regexp="[0-9]+" search_in="hdr" header="CSeq:" assign_to="cseqnum" />
    </action>
  </recv>
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <recv request="CANCEL" />
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <send>
    <![CDATA[
      SIP/2.0 487 Request Terminated
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      CSeq: [$cseqnum] INVITE
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK" />
</scenario>
`

// ScenarioUACCancel is a UAC that sends INVITE, sends CANCEL as soon as 180
// arrives, and succeeds only if the CANCEL gets 200 and then the INVITE gets
// 487 (which it ACKs on the INVITE's branch). Use Service for the user.
const ScenarioUACCancel = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="UAC: CANCEL after 180, expect 200 (CANCEL) and 487 (INVITE)">
  <send retrans="500" start_txn="invite">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Subject: e2e cancel
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

    ]]>
  </send>
  <recv response="100" optional="true" response_txn="invite" />
  <recv response="180" response_txn="invite" />
  <send retrans="500" start_txn="cancel">
    <![CDATA[
      CANCEL sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 CANCEL
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" response_txn="cancel" />
  <recv response="487" response_txn="invite" />
  <send ack_txn="invite">
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
</scenario>
`

// ScenarioUASCalleeHangup is a UAS that answers INVITE with 180 and 200,
// waits for the ACK, pauses for the call length (SippConfig.CallLength) and
// then hangs up itself: it sends BYE (to the caller's Contact, through the
// Record-Route set) and expects 200. Pair it with [ScenarioUACWaitBye].
const ScenarioUASCalleeHangup = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="UAS: answer, then hang up (callee sends BYE)">
  <recv request="INVITE" rrs="true">
    <action>
      <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="caller" />
      <ereg regexp=".*" search_in="hdr" header="To:" check_it="true" assign_to="callee" />
    </action>
  </recv>
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

    ]]>
  </send>
  <recv request="ACK" />
  <pause />
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From:[$callee];tag=[pid]SIPpTag01[call_number]
      To:[$caller]
      Call-ID: [call_id]
      CSeq: 1 BYE
      Max-Forwards: 70
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" />
</scenario>
`

// ScenarioUACWaitBye is a UAC that places a call, ACKs the 200 (through the
// Record-Route set) and then waits for the callee's BYE, which it answers
// with 200. Pair it with [ScenarioUASCalleeHangup].
const ScenarioUACWaitBye = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="UAC: call, then wait for the callee's BYE">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Subject: e2e callee hangup
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

    ]]>
  </send>
  <recv response="100" optional="true" />
  <recv response="180" optional="true" />
  <recv response="183" optional="true" />
  <recv response="200" rrs="true" />
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv request="BYE" />
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
`

// ScenarioUASRegistrar is a registrar stub: it answers one REGISTER with
// 200 OK, echoing the Contact with ;expires=3600. Every REGISTER counts as
// one call, so set Calls to the number of REGISTERs expected (register and
// un-register: 2 per UA). A real UA reuses its Call-ID for re-REGISTER and
// un-REGISTER, which sipp would ignore as a dead call: [StartRegistrar] adds
// -deadcall_wait 0 for that (PEERS.md 1.9).
const ScenarioUASRegistrar = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="Registrar stub: 200 OK to REGISTER">
  <recv request="REGISTER" />
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Contact:];expires=3600
      Content-Length: 0

    ]]>
  </send>
</scenario>
`
