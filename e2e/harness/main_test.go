package harness

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary double as a helper process:
// HARNESS_HELPER=ignore-term ignores SIGTERM (to test Stop's SIGKILL), and
// HARNESS_HELPER=fakegw plays a minimal gateway (to test StartGateway
// without cmd/ucgate).
func TestMain(m *testing.M) {
	switch os.Getenv("HARNESS_HELPER") {
	case "":
		os.Exit(m.Run())
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ignoring SIGTERM")
		time.Sleep(30 * time.Second)
		os.Exit(3)
	case "fakegw":
		os.Exit(fakeGateway())
	default:
		os.Exit(2)
	}
}

// fakeGateway checks its command line ("run -c FILE"), creates the data
// dir, answers every UDP datagram on $FAKEGW_UDP with a SIP 200 and accepts
// TCP on $FAKEGW_TCP, until SIGTERM.
func fakeGateway() int {
	if len(os.Args) < 4 || os.Args[1] != "run" || os.Args[2] != "-c" {
		fmt.Println("usage: run -c FILE")
		return 2
	}
	cfg, err := os.ReadFile(os.Args[3])
	if err != nil {
		fmt.Println(err)
		return 2
	}
	for _, l := range strings.Split(string(cfg), "\n") {
		if v, ok := strings.CutPrefix(l, "data_dir: "); ok {
			if err := os.MkdirAll(strings.Trim(v, `"`), 0o755); err != nil {
				fmt.Println(err)
				return 2
			}
		}
	}
	time.Sleep(200 * time.Millisecond) // not ready at once, like a real start
	uc, err := net.ListenPacket("udp", os.Getenv("FAKEGW_UDP"))
	if err != nil {
		fmt.Println(err)
		return 1
	}
	ln, err := net.Listen("tcp", os.Getenv("FAKEGW_TCP"))
	if err != nil {
		fmt.Println(err)
		return 1
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := uc.ReadFrom(buf)
			if err != nil {
				return
			}
			fmt.Printf("udp %d bytes from %s\n", n, from)
			_, _ = uc.WriteTo([]byte("SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"), from)
		}
	}()
	fmt.Println("fake gateway ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	fmt.Println("fake gateway stopping")
	return 0
}
