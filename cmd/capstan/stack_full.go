//go:build !nodeonly

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/bus/secrets/sops"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/node"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/reconciler/controllers"
	"github.com/capstan-io/capstan/reconciler/gitops"
	"github.com/capstan-io/capstan/schema"
	"github.com/capstan-io/capstan/sources"
	"github.com/capstan-io/capstan/sources/dir"
	"github.com/capstan-io/capstan/sources/git"
	"github.com/capstan-io/capstan/sources/webhook"
)

// stackFlags configure the long-running commands: the node's flags, and
// those of up and server beyond them: the bus, the sources, trust and the
// commits of the write-back commands.
type stackFlags struct {
	nodeStack

	gl           *globals
	trust        *busTrust // the bus's identities (trust.go); nil with --insecure-bus
	listen       string
	tlsSANs      []string
	natsURL      string
	syncAlways   bool
	repo, branch string
	path, dir    string
	sourceName   string
	pollInterval time.Duration
	resync       time.Duration
	nodeGrace    time.Duration
	eviction     time.Duration
	controllers  []string
	gcPercent    int

	webhookListen, webhookSecretFile string
	hook                             *webhook.Receiver // webhook.go

	// The commits of scale and rollout undo (gitwrite.go).
	gitSigningKey string
	signer        commitSigner

	// Trust: the root source's signature policy and the SOPS age keys
	// (trustFlags).
	verifyMode     string
	verifyKeys     []string
	sopsAgeKeyFile string
	verify         *git.VerifyOptions
	sops           *sops.Decrypter
	cache          *cache.Cache // the process's objects cache
	objects        bus.Store    // for declared sources' trusted keys

	declared *gitops.Declarations // what the sources declare, for the orphan sweep
}

func (f *stackFlags) busFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.dataDir, "data-dir", defaultDataDir(), "where the bus, the git cache and the Podman service keep their files")
	cmd.Flags().StringVar(&f.listen, "listen", "127.0.0.1:4222", "address of the embedded NATS server (clients connect here)")
	cmd.Flags().StringVar(&f.natsURL, "nats-url", "", "use this external NATS cluster (with JetStream, configured with capstan auth server-config) instead of the embedded server")
	cmd.Flags().StringSliceVar(&f.tlsSANs, "tls-san", nil, "extra host names or IP addresses for the bus's server certificate (loopback, this host's name and --listen's address are always in it)")
	cmd.Flags().BoolVar(&f.syncAlways, "sync-always", false, "fsync every bus write before acknowledging it (slower; see docs/ARCHITECTURE.md)")
	cmd.Flags().DurationVar(&f.nodeGrace, "node-grace-period", 40*time.Second, "missed-heartbeat time after which a node is NotReady")
	cmd.Flags().StringSliceVar(&f.controllers, "controllers", []string{"*"}, "controllers to run, as kube-controller-manager: * is all, -name leaves one out ("+strings.Join(controllers.ControllerNames(), ", ")+")")
	cmd.Flags().DurationVar(&f.eviction, "pod-eviction-timeout", 30*time.Second, "time a node stays NotReady before its pods are replaced elsewhere")
	if cmd.Flags().Lookup("service-cidr") == nil {
		cmd.Flags().String("service-cidr", controllers.DefaultServiceCIDR, "IPv4 range of the Services' cluster IPs, allocated by the control plane and served by the data plane (.1 and the cluster DNS's .10 are reserved)")
	}
	f.serviceCIDR = cmd.Flags().Lookup("service-cidr")
	f.serviceCIDRv6Flag(cmd)
	cmd.Flags().IntVar(&f.gcPercent, "gc-percent", defaultGCPercent, "the Go collector's GOGC for this process: how much the heap may grow past what was live at the last collection (the environment's GOGC wins when this flag is not given; see docs/ARCHITECTURE.md)")
}

// defaultGCPercent is the control plane's GOGC. Most of its heap is the
// objects cache, which lives as long as the process: at Go's default of
// 100 the heap grows to twice the cache before each collection, too much
// for the memory target (docs/BENCHMARKS.md). Prometheus lowers its GOGC
// (to 75) for the same reason.
const defaultGCPercent = 50

// setGCPercent applies --gc-percent, unless the flag was left alone and
// GOGC is set in the environment.
func (f *stackFlags) setGCPercent(cmd *cobra.Command, log *slog.Logger) {
	if !cmd.Flags().Changed("gc-percent") && os.Getenv("GOGC") != "" {
		return
	}
	debug.SetGCPercent(f.gcPercent)
	log.Debug("collector set", "gc_percent", f.gcPercent)
}

func (f *stackFlags) sourceFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.repo, "repo", "", "git repository to follow: a path, file://, https:// or ssh:// URL")
	cmd.Flags().StringVar(&f.branch, "branch", "", "branch to follow (default: the remote's HEAD)")
	cmd.Flags().StringVar(&f.path, "path", "", "directory inside the repository holding the manifests")
	cmd.Flags().StringVar(&f.dir, "dir", "", "follow a plain directory instead of a git repository")
	cmd.Flags().StringVar(&f.sourceName, "source-name", "root", "name of this source on the bus")
	cmd.Flags().DurationVar(&f.pollInterval, "poll-interval", time.Minute, "how often to poll the repository (local ones are also watched)")
	cmd.Flags().DurationVar(&f.resync, "resync-interval", time.Minute, "how often to re-apply the current revision, correcting drift")
	f.webhookFlags(cmd)
	f.trustFlags(cmd)
	f.gitSigningFlag(cmd)
}

func splitHostPort(addr string) (string, int, error) {
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		return "", 0, fmt.Errorf("--listen %q: want host:port", addr)
	}
	var port int
	if _, err := fmt.Sscan(addr[i+1:], &port); err != nil {
		return "", 0, fmt.Errorf("--listen %q: bad port", addr)
	}
	return strings.Trim(addr[:i], "[]"), port, nil
}

func (f *stackFlags) source(log *slog.Logger) (sources.Source, error) {
	if err := f.loadTrust(); err != nil {
		return nil, err
	}
	switch {
	case f.dir != "" && f.repo != "":
		return nil, errors.New("give --repo or --dir, not both")
	case f.dir != "":
		return dir.New(dir.Options{Dir: f.dir, Interval: f.pollInterval}, log)
	case f.repo != "":
		return git.New(git.Options{URL: f.repo, Branch: f.branch, Path: f.path, Interval: f.pollInterval,
			CacheDir: filepath.Join(f.dataDir, "git"), Verify: f.verify}, log)
	}
	return nil, errors.New("no source: give --repo PATH_OR_URL or --dir PATH")
}

func (f *stackFlags) runControlPlane(g *group, conn *natsbus.Conn, log *slog.Logger) {
	if f.repo != "" || f.dir != "" { // runSync follows: the sources fill it
		f.declared = gitops.NewDeclarations()
	}
	cp := &controllers.ControlPlane{
		Objects: conn.Objects, Assignments: conn.Assignments, Status: conn.Status, Nodes: conn.Nodes,
		Events: conn.Events, Log: log.With("component", "control-plane"),
		NodeGracePeriod: f.nodeGrace, PodEvictionTimeout: f.eviction,
		ServiceCIDR: f.serviceCIDR.Value.String(), ServiceCIDRv6: f.v6Range(),
		Sops: f.sops, Controllers: f.controllers, Cache: f.cache,
	}
	if f.declared != nil {
		cp.Addons = append(cp.Addons, gitops.OrphanSweep(conn.Audit, f.declared))
	}
	g.Go("control plane", cp.Run)
}

func (f *stackFlags) runSync(g *group, conn *natsbus.Conn, src sources.Source, log *slog.Logger) {
	f.objects = conn.Objects
	s := &gitops.Syncer{Name: f.sourceName, Source: src, Load: sops.LoadSecrets(schema.Load, f.sops), Objects: conn.Objects,
		Audit: conn.Audit, Events: conn.Events, Log: log.With("component", "sync"), Resync: f.resync}
	// The source manager runs the root and the Sources declared in Git,
	// computes their health and feeds the notifications (sources.go).
	notify := &gitops.Notifiers{Publish: conn.NC.Publish, State: conn.Notified, Log: log.With("component", "notify")}
	m := &gitops.SourceManager{Root: s, Objects: conn.Objects, Audit: conn.Audit, Events: conn.Events,
		Load: sops.LoadSecrets(schema.Load, f.sops), Log: log.With("component", "sources"), Resync: f.resync, Notify: notify,
		CredentialsDir: filepath.Join(f.dataDir, "sources"), Open: f.openSource(log.With("component", "source")), Sops: f.sops,
		Triggers: f.webhookTargets(), Declarations: f.declared, Cache: f.cache}
	g.Go("sources", m.Run)
	g.Go("notifications", notify.Run)
	f.runGitWriter(g, conn, m, log)
}

// openSource makes the git source of a Source declared in Git, its mirror
// in <data-dir>/git/sources/<name>.
func (f *stackFlags) openSource(log *slog.Logger) gitops.OpenFunc {
	return func(name string, spec manifests.SourceSpec, cred gitops.SourceCredentials) (sources.Source, error) {
		interval := f.pollInterval
		if spec.Interval != "" {
			d, err := time.ParseDuration(spec.Interval)
			if err != nil {
				return nil, fmt.Errorf("source %s: interval: %w", name, err)
			}
			interval = d
		}
		opts := git.Options{URL: spec.URL, Path: spec.Path, Interval: interval, CacheDir: filepath.Join(f.dataDir, "git", "sources", name),
			Username: cred.Username, PasswordFile: cred.PasswordFile, SSHKeyFile: cred.IdentityFile, KnownHostsFile: cred.KnownHostsFile}
		if r := spec.Ref; r != nil {
			opts.Branch, opts.Tag, opts.SemVer, opts.Commit = r.Branch, r.Tag, r.SemVer, r.Commit
		}
		opts.Verify = f.declaredVerify(spec.Verify) // trust below
		return git.New(opts, log.With("source_name", name))
	}
}

func serverCmd(gl *globals) *cobra.Command {
	f := &stackFlags{gl: gl}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the bus (embedded unless --nats-url), the control plane and the git source, without a node",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := gl.logger()
			var src sources.Source
			if f.repo != "" || f.dir != "" {
				var err error
				if src, err = f.source(log.With("component", "source")); err != nil {
					return err
				}
			}
			f.setGCPercent(cmd, log)
			return f.run(cmd.Context(), log, src, false)
		},
	}
	f.busFlags(cmd)
	f.sourceFlags(cmd)
	return cmd
}

func (f *stackFlags) run(ctx context.Context, log *slog.Logger, src sources.Source, withNode bool) error {
	// Nodes heartbeat every 10 s: a shorter grace would mark healthy nodes
	// NotReady between two heartbeats and evict their pods.
	if hb := node.DefaultHeartbeatInterval; f.nodeGrace <= hb {
		return fmt.Errorf("--node-grace-period %s must be longer than the nodes' heartbeat interval (%s)", f.nodeGrace, hb)
	}
	if _, err := controllers.ParseControllers(f.controllers); err != nil {
		return fmt.Errorf("--%w", err)
	}
	hook, err := f.webhook(src, log)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
		return err
	}
	conn, trust, closeBus, err := f.startBus(ctx, log) // trust.go
	if err != nil {
		return err
	}
	defer closeBus()
	f.trust = trust
	cpConn, serveSecrets, err := f.secretsAtRest(conn, log) // atrest.go: Secret values encrypted at rest
	if err != nil {
		return err
	}
	g := newGroup(ctx, log)
	g.Go("secrets", serveSecrets)
	if err := f.runTrust(g, conn, trust, log); err != nil {
		g.cancel()
		_ = g.Wait()
		return err
	}
	// One objects cache for the control plane and the sources.
	f.cache = cache.New(cpConn.Objects, log.With("component", "objects-cache"))
	g.Go("objects cache", f.cache.Run)
	f.runControlPlane(g, cpConn, log)
	if src != nil {
		f.runSync(g, cpConn, src, log)
	}
	if hook != nil {
		g.Go("webhook", hook.Run)
	}
	if withNode {
		stop, err := f.runNode(g.ctx, g, conn, log)
		if err != nil {
			g.cancel()
			_ = g.Wait()
			return err
		}
		defer func() { _ = stop() }()
	}
	log.Info("capstan running", "server", conn.NC.ConnectedUrlRedacted())
	err = g.Wait()
	log.Info("capstan stopped; pods keep running")
	return err
}

// trustFlags adds the root source's signature policy and the SOPS key.
func (f *stackFlags) trustFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.verifyMode, "verify", "", `verify commit signatures: "head" (the commit applied must be signed by a trusted key) or "all" (every commit since the last applied one); needs --verify-keys`)
	cmd.Flags().StringSliceVar(&f.verifyKeys, "verify-keys", nil, "files of trusted keys: armored OpenPGP public keys and SSH public keys (authorized_keys or allowed_signers lines); re-read at every check")
	cmd.Flags().StringVar(&f.sopsAgeKeyFile, "sops-age-key-file", os.Getenv("SOPS_AGE_KEY_FILE"), "age identity file decrypting Secrets committed encrypted with SOPS (env SOPS_AGE_KEY_FILE)")
}

// loadTrust checks the trust flags and reads the SOPS key.
func (f *stackFlags) loadTrust() error {
	switch {
	case f.verifyMode == "" && len(f.verifyKeys) > 0:
		return errors.New("--verify-keys needs --verify head|all")
	case f.verifyMode != "" && len(f.verifyKeys) == 0:
		return errors.New("--verify needs --verify-keys FILE")
	case f.verifyMode != "" && f.repo == "":
		return errors.New("--verify needs a git repository (--repo)")
	case f.verifyMode != "":
		keys := git.KeyFiles(f.verifyKeys...)
		if _, err := keys(); err != nil {
			return err
		}
		f.verify = &git.VerifyOptions{Mode: f.verifyMode, Keys: keys}
	}
	if f.sopsAgeKeyFile != "" {
		s, err := sops.LoadKeyFile(f.sopsAgeKeyFile)
		if err != nil {
			return err
		}
		f.sops = s
	}
	return f.loadSigningKey()
}

// declaredVerify is the signature policy of a Source declared in Git: its
// trusted keys are the values of a Secret in capstan-system, read (and
// decrypted, if committed with SOPS) at every check.
func (f *stackFlags) declaredVerify(v *manifests.VerifySpec) *git.VerifyOptions {
	if v == nil {
		return nil
	}
	objects, sops := f.objects, f.sops
	return &git.VerifyOptions{Mode: v.Mode, Keys: func() (*git.Keyring, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		obj, _, err := cache.GetObject(ctx, objects, manifests.Key("Secret", "capstan-system", v.SecretRef.Name))
		if err != nil {
			return nil, fmt.Errorf("trusted keys: Secret capstan-system/%s: %w", v.SecretRef.Name, err)
		}
		sec, err := sops.Decrypt(obj.(*manifests.Secret))
		if err != nil {
			return nil, fmt.Errorf("trusted keys: Secret capstan-system/%s: %w", v.SecretRef.Name, err)
		}
		blobs := make([][]byte, 0, len(sec.Data))
		for _, k := range slices.Sorted(maps.Keys(sec.Data)) {
			blobs = append(blobs, sec.Data[k])
		}
		k, err := git.ParseKeys(blobs...)
		if err != nil {
			return nil, fmt.Errorf("trusted keys: Secret capstan-system/%s: %w", v.SecretRef.Name, err)
		}
		return k, nil
	}}
}
