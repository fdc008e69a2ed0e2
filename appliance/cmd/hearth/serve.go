package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hearthxmpp/hearth/appliance/control"
	"github.com/hearthxmpp/hearth/appliance/httpd"
	"github.com/hearthxmpp/hearth/appliance/invite"
	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/tlsutil"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/muc"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/upload"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/ddns/mdns"
	"github.com/hearthxmpp/hearth/ddns/portmap"
	"github.com/hearthxmpp/hearth/webui"
)

// serveConfig is everything `hearth serve` takes from its flags.
type serveConfig struct {
	data, domain, listen, logLevel string
	portMapping, mdnsHost          string
	c2sPort, c2sTLSPort            int
	s2sPort, httpPort, httpsPort   int
	turnPort                       int
	mamRetention                   time.Duration
	pushContent                    bool
	limits                         server.Limits
	contacts                       map[string][]string
	// portmap keeps the router's port mappings (nil with --port-mapping
	// off); the web pages' reachability check refreshes and reads it.
	portmap *portmap.Manager
	// ACME certificates and dynamic DNS (acme.go).
	acme acmeSetup
	// TURN/STUN, XEP-0215 and the XEP-0065 proxy (calls.go).
	calls callsSetup
	// Invitations, registration and the web pages (web.go).
	ui uiSetup
	// XEP-0045 group chat (mod/muc): the service's domain, and the service
	// once registered (circles' group chats, deleted accounts' affiliations).
	mucDomain string
	muc       *muc.Service
	// groupChat gives circles their rooms (invite.Config.GroupChat).
	groupChat invite.GroupChat
	// XEP-0363 file upload (mod/upload).
	uploadDomain, uploadURL    string
	uploadMaxFile, uploadQuota upload.ByteSize
	uploadCap                  upload.ByteSize
	uploadRetention            time.Duration
	// Public base URL of the HTTPS server, for XEP-0156 discovery (webxmpp.go).
	publicURL string
	// jobs are background jobs registerModules adds (retention passes):
	// serve starts them with the listeners and waits for them before the
	// store closes.
	jobs []func(context.Context) <-chan struct{}
	// dnsResolver is --dns-resolver: the DNS server the live DNS check asks
	// ("" the system's resolver).
	dnsResolver string
	// site is the setup wizard's stored domain choice (site.go).
	site webui.SiteChoice
	// store, srv and log are this run's; restart ends the run so that the
	// serve loop starts the next one (webui's ApplySite).
	store   *store.Store
	srv     *server.Server
	log     *slog.Logger
	restart func()
	addrs   addrCache
	// flags is this run's flag set and explicit the names of the flags
	// given on the command line (they win over stored settings).
	flags    *flag.FlagSet
	explicit map[string]bool
}

func serveFlags(stderr io.Writer) (*flag.FlagSet, *serveConfig) {
	c := &serveConfig{contacts: map[string][]string{}}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.data, "data", "data", "data directory (SQLite database, certificates)")
	fs.StringVar(&c.domain, "domain", "localhost", "XMPP domain served")
	fs.StringVar(&c.listen, "listen", "127.0.0.1", "comma-separated addresses to listen on (0.0.0.0 and :: for all)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.portMapping, "port-mapping", "off", "ask the home router to forward the public ports: auto, upnp, natpmp or off")
	fs.StringVar(&c.mdnsHost, "mdns-host", "", "announce HOST.local and the XMPP and web services on the LAN with mDNS (e.g. hearth); empty: off")
	fs.IntVar(&c.c2sPort, "c2s-port", 5222, "client port, STARTTLS required (RFC 6120)")
	fs.IntVar(&c.c2sTLSPort, "c2s-tls-port", 5223, "client port, direct TLS (XEP-0368); 0 disables")
	fs.IntVar(&c.s2sPort, "s2s-port", 5269, "server-to-server port (federation; not served yet)")
	fs.IntVar(&c.httpPort, "http-port", 5280, "plain HTTP port (setup wizard on the LAN, ACME HTTP-01); 0 disables")
	fs.IntVar(&c.httpsPort, "https-port", 5281, "HTTPS port (web client, upload, WebSocket, BOSH, admin); 0 disables")
	fs.IntVar(&c.turnPort, "turn-port", 3478, "STUN/TURN port, UDP and TCP (calls); 0 disables STUN/TURN and XEP-0215")
	fs.IntVar(&c.limits.MaxStanzaBytes, "max-stanza-bytes", server.DefaultLimits.MaxStanzaBytes, "largest stanza accepted, bytes")
	fs.IntVar(&c.limits.MaxConnsPerIP, "max-conns-per-ip", server.DefaultLimits.MaxConnsPerIP, "simultaneous connections per source address")
	fs.IntVar(&c.limits.ReadBytesPerSecond, "max-read-rate", server.DefaultLimits.ReadBytesPerSecond, "bytes per second read from one client connection (bursts allowed); slower clients are simply read slower")
	fs.DurationVar(&c.limits.AuthTimeout, "auth-timeout", server.DefaultLimits.AuthTimeout, "time allowed from connect to bound resource")
	fs.DurationVar(&c.limits.ResumeTimeout, "sm-resume-timeout", server.DefaultLimits.ResumeTimeout, "how long a dropped mobile session stays resumable (XEP-0198)")
	fs.DurationVar(&c.mamRetention, "mam-retention", 30*24*time.Hour, "how long message archives (XEP-0313) are kept; 0 keeps them forever")
	fs.StringVar(&c.mucDomain, "muc-domain", "", "domain of the group chat service (XEP-0045); default groups.DOMAIN")
	c.uploadMaxFile, c.uploadQuota = upload.DefaultMaxFileSize, upload.DefaultDailyQuota
	fs.StringVar(&c.uploadDomain, "upload-domain", "", "domain of the file upload service (XEP-0363); default upload.DOMAIN")
	fs.StringVar(&c.uploadURL, "upload-url", "", "base URL of upload links; default https://DOMAIN:HTTPS-PORT")
	fs.Var(&c.uploadMaxFile, "upload-max-file-size", "largest file accepted for upload (bytes, or with KiB, MiB, GiB...)")
	fs.Var(&c.uploadQuota, "upload-quota-daily", "bytes one account may upload per 24 hours; 0: no quota")
	fs.Var(&c.uploadCap, "upload-storage-cap", "bytes all uploaded files may take together; 0: no cap (a free-disk reserve still applies)")
	fs.DurationVar(&c.uploadRetention, "upload-retention", upload.DefaultRetention, "how long uploaded files are kept; 0 keeps them forever")
	fs.StringVar(&c.publicURL, "public-url", "", "public base URL of the HTTPS server, announced for WebSocket and BOSH (XEP-0156); default https://DOMAIN:HTTPS-PORT")
	fs.BoolVar(&c.pushContent, "push-include-content", false, "put sender and message text into push notifications (XEP-0357); off keeps them away from the phone vendors' push services")
	fs.IntVar(&c.limits.MaxOfflinePerUser, "max-offline", server.DefaultLimits.MaxOfflinePerUser, "offline messages kept per account")
	for _, kind := range []string{"admin", "abuse", "support", "security", "feedback", "sales", "status"} {
		key := kind + "-addresses"
		fs.Func("contact-"+kind, "XEP-0157 "+kind+" contact address (URI like xmpp:admin@example.org or mailto:...); repeatable", func(v string) error {
			c.contacts[key] = append(c.contacts[key], v)
			return nil
		})
	}
	fs.StringVar(&c.dnsResolver, "dns-resolver", "", "DNS server (host:port) the setup wizard's live DNS check asks; default: the system's resolver")
	c.acme.register(fs)
	c.calls.register(fs)
	c.ui.register(fs)
	return fs, c
}

// errRestart is the cause that ends a run of serveOnce when the setup
// wizard saved a new domain choice: the loop starts the next run.
var errRestart = errors.New("the domain choice changed")

// serve runs the server until SIGINT/SIGTERM. Each run parses the flags
// afresh, applies the stored domain choice and builds the server, its
// listeners and jobs; when the setup wizard saves a new choice the run ends
// (every listener closed, jobs stopped, store closed) and the next one
// starts in the same process.
func serve(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serveLoop(ctx, args, stdout, stderr)
}

// serveLoop runs serveOnce until it ends for another reason than a
// restart, or ctx ends.
func serveLoop(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	// One server per data directory, for all runs: the CLI tells "running"
	// from "restarting" by this lock (control.Call, ErrUnavailable).
	if fs, cfg := serveFlags(io.Discard); fs.Parse(args) == nil {
		release, err := control.Lock(cfg.data)
		// A CLI command probing the lock (control.Running) holds it for an
		// instant: try again for a second before calling it another server.
		for i := 0; errors.Is(err, control.ErrRunning) && i < 20; i++ {
			time.Sleep(50 * time.Millisecond)
			release, err = control.Lock(cfg.data)
		}
		if err != nil {
			fmt.Fprintf(stderr, "hearth: cannot serve %s: %v\n", cfg.data, err)
			return 1
		}
		defer release()
	}
	for {
		code, restart := serveOnce(ctx, args, stdout, stderr)
		if !restart || ctx.Err() != nil {
			return code
		}
	}
}

// serveOnce is one run of the server until ctx ends (exit code 0) or it
// asks for a restart (restart true); it returns a non-zero exit code when
// the configuration is wrong or a listener fails.
func serveOnce(parent context.Context, args []string, stdout, stderr io.Writer) (code int, restart bool) {
	fs, cfg := serveFlags(stderr)
	if err := fs.Parse(args); err != nil {
		return 2, false
	}
	switch cfg.portMapping {
	case "off", "auto", "upnp", "natpmp":
	default:
		fmt.Fprintf(stderr, "hearth: bad --port-mapping %q: want auto, upnp, natpmp or off\n", cfg.portMapping)
		return 2, false
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		fmt.Fprintf(stderr, "hearth: bad --log-level: %v\n", err)
		return 2, false
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)
	cfg.log = log

	st, err := store.Open(filepath.Join(cfg.data, "hearth.db"))
	if err != nil {
		log.Error("opening the store failed", "err", err)
		return 1, false
	}
	defer st.Close()
	cfg.store = st
	cfg.flags, cfg.explicit = fs, explicitFlags(fs)
	// Server settings made on the admin settings page (adminflags.go).
	if err := applyAdminFlags(parent, st, fs, cfg.explicit, log); err != nil {
		log.Error("reading the server settings failed", "err", err)
		return 1, false
	}
	if cfg.domain, err = serveDomain(parent, st, cfg.domain, log); err != nil {
		log.Error(err.Error())
		return 1, false
	}
	if cfg.site, err = loadSite(parent, st); err != nil {
		log.Error("reading the domain choice failed", "err", err)
		return 1, false
	}
	if applied := applySiteChoice(cfg, cfg.explicit, cfg.site); len(applied) > 0 {
		log.Info("applying the setup wizard's domain choice", "dns", cfg.site.DNS, "flags", strings.Join(applied, ","))
	}
	cfg.site = siteChoiceInForce(cfg.site, cfg.domain)
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	cfg.restart = func() { cancel(errRestart) }

	cert, err := tlsutil.LoadOrCreateSelfSigned(filepath.Join(cfg.data, "tls"), cfg.domain)
	if err != nil {
		log.Error("loading the TLS certificate failed", "err", err)
		return 1, false
	}
	srv, err := server.New(server.Config{
		Domain: cfg.domain, Store: st, Certificate: cert, Limits: cfg.limits,
		Version: version, Logger: log, GetCertificate: cfg.acme.getCertificate(cert),
	})
	if err != nil {
		log.Error("configuration error", "err", err)
		return 1, false
	}
	cfg.srv = srv
	cfg.portmap = newPortMapper(cfg, log)
	web := httpd.New(log)
	arch, err := registerModules(srv, web, cfg)
	if err != nil {
		log.Error("configuration error", "err", err)
		return 1, false
	}
	if err := cfg.acme.setup(cfg, srv, web, st, log); err != nil {
		log.Error("configuration error", "err", err)
		return 1, false
	}

	archDone := arch.Start(ctx)
	var jobsDone []<-chan struct{}
	for _, start := range cfg.jobs {
		jobsDone = append(jobsDone, start(ctx))
	}
	// stopAll ends the run: listeners closed, jobs waited for (the store
	// closes after them).
	stopAll := func() {
		cancel(nil)
		// Each server gets its own 10 s: a slow web request (a DNS or
		// reachability check) does not cut the XMPP streams' goodbye short.
		wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer wcancel()
		if err := web.Shutdown(wctx); err != nil {
			log.Warn("HTTP shutdown incomplete", "err", err)
		}
		xctx, xcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer xcancel()
		if err := srv.Shutdown(xctx); err != nil {
			log.Warn("shutdown incomplete", "err", err)
		}
		<-archDone // the retention job stopped with ctx; the store closes after it
		for _, done := range jobsDone {
			<-done
		}
	}
	var c2s []string
	for _, host := range strings.Split(cfg.listen, ",") {
		host = strings.TrimSpace(host)
		for _, l := range []struct {
			port   int
			direct bool
		}{{cfg.c2sPort, false}, {cfg.c2sTLSPort, true}} {
			if l.port == 0 {
				continue
			}
			addr, err := srv.ListenC2S(ctx, net.JoinHostPort(host, strconv.Itoa(l.port)), l.direct)
			if err != nil {
				log.Error("listen failed", "err", err)
				stopAll()
				return 1, false
			}
			c2s = append(c2s, addr.String())
		}
		for _, l := range []struct {
			port   int
			secure bool
		}{{cfg.httpPort, false}, {cfg.httpsPort, true}} {
			if l.port == 0 {
				continue
			}
			addr := net.JoinHostPort(host, strconv.Itoa(l.port))
			var err error
			if l.secure {
				_, err = web.ListenTLS(addr, cfg.acme.httpsConfig(cert))
			} else {
				_, err = web.Listen(addr)
			}
			if err != nil {
				log.Error("listen failed", "err", err)
				stopAll()
				return 1, false
			}
		}
	}
	// The control socket DATA/control.sock for the CLI (hearth announce,
	// circle, user role...); after the listeners, since its wait returns
	// only once ctx ends.
	waitControl, err := startControl(ctx, cfg.data, cfg.ui.ui, cfg.ui.invites, log)
	if err != nil {
		log.Error("control socket not started: the CLI commands that need the running server will fail", "err", err)
		waitControl = func() {}
	}
	fmt.Fprintf(stdout, "Hearth %s is serving %s.\n", version, cfg.domain)
	fmt.Fprintf(stdout, "  Clients connect to %s (port %d: STARTTLS, port %d: direct TLS).\n", strings.Join(c2s, ", "), cfg.c2sPort, cfg.c2sTLSPort)
	fmt.Fprintf(stdout, "  The certificate is self-signed (%s): tell your client to trust it.\n", filepath.Join(cfg.data, "tls", "cert.pem"))
	fmt.Fprintf(stdout, "  Add an account: hearth user add alice@%s --data %s\n", cfg.domain, cfg.data)
	if cfg.acme.acme {
		fmt.Fprintf(stdout, "  ACME is on: the CA's certificate replaces the self-signed one once issued.\n")
	}
	// ACME and dynamic DNS start once the listeners are up (HTTP-01).
	waitACME := cfg.acme.start(ctx)

	var waitPortMap func()
	if cfg.portmap != nil {
		// Run removes the mappings once ctx ends; wait for that.
		waitPortMap = startPortMapping(ctx, cfg.portmap)
	}
	mdnsDone := make(chan struct{})
	if cfg.mdnsHost != "" {
		go func() {
			defer close(mdnsDone)
			err := mdns.Advertise(ctx, mdns.Config{Host: cfg.mdnsHost, Domain: cfg.domain, C2SPort: cfg.c2sPort, HTTPPort: cfg.httpPort, Logger: log})
			if err != nil && ctx.Err() == nil {
				log.Warn("mDNS announcement stopped", "err", err)
			}
		}()
	} else {
		close(mdnsDone)
	}

	<-ctx.Done()
	restart = errors.Is(context.Cause(ctx), errRestart) && parent.Err() == nil
	if restart {
		log.Info("restarting the services for the new domain choice")
	} else {
		log.Info("shutting down")
	}
	stopAll()
	waitControl()
	waitACME()
	if waitPortMap != nil {
		waitPortMap()
	}
	<-mdnsDone
	return 0, restart
}

// checkDomain binds a data directory to one domain: the first start records
// it, later starts (and the user commands) must name the same one, since
// accounts and rosters belong to it.
func checkDomain(ctx context.Context, st *store.Store, domain string) error {
	stored, err := st.Setting(ctx, store.SettingDomain)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return st.SetSetting(ctx, store.SettingDomain, domain)
	case err != nil:
		return err
	case stored != domain:
		return fmt.Errorf("this data directory belongs to domain %q, not %q (use --domain %s, or another --data directory)", stored, domain, stored)
	}
	return nil
}
