package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/ucgate/ucgate/core"
	"github.com/ucgate/ucgate/plugins/host"
)

// newPlugins prepares the plugin host of the plugins section (nil when
// the section is empty) and hands its stage to the pipeline builder
// through deps.Extern.
func (gw *gateway) newPlugins(deps core.Deps) (core.Deps, error) {
	if len(gw.cfg.Plugins) == 0 {
		return deps, nil
	}
	h, err := host.New(gw.cfg.Plugins, deps)
	if err != nil {
		return deps, fmt.Errorf("plugins: %w", err)
	}
	gw.plugins = h
	if s := h.Stage(); s != nil {
		ext := map[string]core.Stage{}
		for k, v := range deps.Extern {
			ext[k] = v
		}
		ext[host.StageName] = s
		deps.Extern = ext
	}
	return deps, nil
}

// startPlugins starts the plugin processes on the current pipeline. A
// plugin that is refused (checksum, contract version) stops the start.
func (gw *gateway) startPlugins(ctx context.Context) error {
	if gw.plugins == nil {
		return nil
	}
	gw.plugins.SetPipeline(gw.pipe.Pipeline)
	return gw.plugins.Start(ctx)
}

// warnPluginChanges says, on a reload, that a changed plugins section (or
// webrtc.transcoder) is not applied: the plugins keep running as started
// until the gateway restarts. It reports whether it warned.
func (gw *gateway) warnPluginChanges(cfg Config) bool {
	if reflect.DeepEqual(gw.cfg.Plugins, cfg.Plugins) && gw.cfg.WebRTC.Transcoder == cfg.WebRTC.Transcoder {
		return false
	}
	gw.log.Warn("reload: the plugins section (or webrtc.transcoder) changed; plugins keep running as started until ucgate restarts")
	return true
}

func (gw *gateway) setPluginPipeline(p *core.Pipeline) {
	if gw.plugins != nil {
		gw.plugins.SetPipeline(p)
	}
}

func (gw *gateway) closePlugins() error {
	if gw.plugins == nil {
		return nil
	}
	return gw.plugins.Close()
}

// pluginStage is the constructor of the "plugins" stage: the plugin
// host's, when stage plugins are configured.
func pluginStage(_ Config, d core.Deps, _ *core.Pipeline) (core.Stage, error) {
	if s, ok := d.Extern[host.StageName]; ok && s != nil {
		return s, nil
	}
	return nil, nil
}

// pluginRoutes adds GET /plugins to the admin API.
func (gw *gateway) pluginRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /plugins", func(w http.ResponseWriter, _ *http.Request) {
		if gw.plugins == nil {
			writeJSON(w, []host.Status{})
			return
		}
		writeJSON(w, gw.plugins.Status())
	})
}

// cmdPlugins is `ucgate plugins`: the running gateway's plugins, their
// kinds, contract versions and state, from the admin API.
func cmdPlugins(args []string, out io.Writer) error {
	fs := newFlags("plugins")
	file := fs.String("c", "", "configuration file (to find the admin listener)")
	admin := fs.String("admin", "", "admin listener host:port (default: from the configuration)")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	base, err := adminBase(*file, *admin)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var list []host.Status
	if err := call(ctx, http.MethodGet, base+"/plugins", nil, &list); err != nil {
		return err
	}
	if *asJSON {
		return writeJSONValue(out, list)
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tCONTRACT\tSOFTWARE\tSTATE\tSINCE\tRESTARTS\tCALLS\tERRORS\tSESSIONS\tLAST ERROR")
	for _, p := range list {
		sw := "-"
		if p.Software != "" {
			sw = p.Software + " " + p.Version
		}
		contract, since := "-", "-"
		if p.Contract > 0 {
			contract = "v" + strconv.Itoa(p.Contract)
		}
		if !p.Since.IsZero() {
			since = p.Since.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", p.Name, p.Kind, contract, sw, p.State, since,
			p.Restarts, p.Calls, p.Errors, p.Sessions, p.LastErr)
	}
	return tw.Flush()
}

func writeJSONValue(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
