// Command ucgate-transcode is the video transcoding plugin of ucgate: a
// media plugin (plugins/sdk, served over go-plugin's gRPC) that turns VP8
// into H.264 constrained baseline and back with package transcode, for
// calls whose offer and answer share no video codec. The gateway starts it;
// run by hand it says so and exits.
//
// Usage (as the plugin's args in ucgate.yaml):
//
//	ucgate-transcode [-config transcode.yaml] [-max-streams 8] [-log-level info]
//
// The YAML file holds transcode.Config (see the README's transcoding
// section); unknown keys are refused with their line.
//
// What the host and the plugin exchange on one Media.Relay stream:
//
//   - MediaOpen: in and out codecs (VP8 or H264, 90 kHz, payload types; an
//     H.264 side with packetization-mode other than 1 is refused), and
//     optionally the wanted bitrate, size and frame rate of the output;
//   - host to plugin: the incoming stream's RTP, and (rtcp: true) the
//     receiver's RTCP feedback about the outgoing stream (PLI and FIR
//     force a keyframe, REMB sets the bitrate, and with it the
//     size and frame rate (package transcode); the rest is ignored);
//   - plugin to host: the outgoing stream's RTP, with the incoming SSRC
//     (so the receiver's feedback names the SSRC the sender announced),
//     and (rtcp: true) a PLI for the incoming stream's sender whenever the
//     transcoder needs a keyframe; the host forwards it upstream.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"go.yaml.in/yaml/v3"

	"github.com/ucgate/ucgate/plugins/sdk"
	"github.com/ucgate/ucgate/plugins/sdk/pb"
	"github.com/ucgate/ucgate/transcode"
)

// version is the plugin's version, as `ucgate plugins` shows it.
const version = "0.1.0"

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ucgate-transcode:", err)
		os.Exit(2)
	}
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("ucgate-transcode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "YAML file with the transcoder configuration (default: built-in defaults)")
	maxStreams := fs.Int("max-streams", 8, "most streams transcoded at once; more are refused")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	if *maxStreams < 1 || *maxStreams > 1024 {
		return fmt.Errorf("-max-streams: must be between 1 and 1024, got %d", *maxStreams)
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if os.Getenv(sdk.Handshake.MagicCookieKey) != sdk.Handshake.MagicCookieValue {
		return errors.New("this is a ucgate plugin: list it in the plugins section of ucgate.yaml (kind: media); the gateway starts it")
	}
	// go-plugin forwards stderr to the host, which logs it with plugin=<name>.
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	m := &media{cfg: cfg, maxStreams: int64(*maxStreams), log: log}
	sdk.Serve(sdk.KindMedia, m, &pb.Description{Software: "ucgate-transcode", Version: version})
	return nil
}

// loadConfig reads the transcoder configuration (strict: unknown keys are
// errors) and validates it after defaults.
func loadConfig(path string) (transcode.Config, error) {
	var cfg transcode.Config
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("read config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return cfg, fmt.Errorf("%s: %w", path, err)
		}
	}
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}
