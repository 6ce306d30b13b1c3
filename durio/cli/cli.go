package cli

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/durio"
	"github.com/ruaft/ruaft/durio/client"
	"github.com/ruaft/ruaft/kvraft/kvclient"
	"github.com/ruaft/ruaft/kvraft/kvwire"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// errNoneReachable is returned by `durio status` when no endpoint answered.
var errNoneReachable = errors.New("no endpoint answered")

// Exit codes of the durio command. Scripts may rely on them.
const (
	// ExitOK: the command did what it was asked.
	ExitOK = 0
	// ExitFailure: any other failure, e.g. the request was refused as
	// invalid (400), a TLS certificate was not trusted, a file was missing.
	ExitFailure = 1
	// ExitUsage: bad command line, environment variable or configuration.
	ExitUsage = 2
	// ExitNotFound: `durio get` of a key that does not exist.
	ExitNotFound = 3
	// ExitUnavailable: no replica could be reached, or the cluster answered
	// that it has no leader (503); `durio status` when no endpoint answered.
	ExitUnavailable = 4
	// ExitTimeout: gave up waiting (--timeout), or the cluster answered 504.
	// A write that ends this way may or may not have been applied.
	ExitTimeout = 5
	// ExitConditionFailed: a conditional write (--if-absent, --if-revision,
	// --if-version, --if-value) found its condition false; nothing was
	// written.
	ExitConditionFailed = 6
	// ExitUnauthorized: the replica requires a client token and was sent
	// none or an unknown one (401), or one whose role does not allow the
	// command (403); nothing was done.
	ExitUnauthorized = 8
)

// ExitCode maps an error from a durio command to its exit code.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, durio.ErrUsage), errors.Is(err, durio.ErrConfig):
		return ExitUsage
	case errors.Is(err, client.ErrNotFound), errors.Is(err, client.ErrLeaseNotFound):
		return ExitNotFound
	case errors.Is(err, client.ErrConditionFailed):
		return ExitConditionFailed
	case errors.As(err, new(memberErr)):
		if code, ok := memberExitCode(err); ok {
			return code
		}
	case errors.Is(err, errNoneReachable):
		return ExitUnavailable
	case kvwire.TLSRejected(err):
		return ExitFailure
	}
	// An answer from a server says more than our own deadline: prefer it.
	var terr twirp.Error
	isTwirp := errors.As(err, &terr)
	switch {
	case isTwirp && !kvwire.NoAnswer(terr):
		switch terr.Code() {
		case twirp.Unauthenticated, twirp.PermissionDenied:
			return ExitUnauthorized
		case twirp.Unavailable:
			return ExitUnavailable
		case twirp.DeadlineExceeded:
			return ExitTimeout
		}
		return ExitFailure
	case errors.Is(err, client.ErrUnknownOutcome):
		return ExitTimeout
	case errors.Is(err, client.ErrUnavailable):
		// The client's verdict: no replica took the request before the
		// deadline (every one refused the connection, or had no leader),
		// so a write was not applied.
		return ExitUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return ExitTimeout
	case isTwirp, errors.Is(err, syscall.ECONNREFUSED):
		return ExitUnavailable // no server answered
	}
	return ExitFailure
}

// exitCodesHelp documents the exit codes in `durio --help`.
const exitCodesHelp = `Exit codes:
  0  success
  1  other failure (request refused as invalid, untrusted TLS certificate, ...)
  2  bad command line, environment variable or configuration
  3  durio get: no such key; durio lease: no such lease
  4  cluster unavailable: no replica reachable, or no leader (503);
     durio status: no endpoint answered
  5  timed out (--timeout, or the cluster's 504): a write may or may not
     have been applied
  6  durio put/delete --if-...: the condition did not hold; nothing written
  7  durio member: refused for now (another change in progress, or the
     learner is still catching up): retry; or the outcome is unknown
     (leadership changed while the change was committing): check with
     durio member list, then retry if it was not made
  8  not authorized: the replicas require a client token (--token-file)
     and got none, an unknown one, or one whose role does not allow this`

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// envPrefix starts the environment variable of every flag: --endpoints is
// also DURIO_ENDPOINTS, --peer-token DURIO_PEER_TOKEN.
const envPrefix = "DURIO_"

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// cli is one run of the durio command.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) (string, bool)
	// started is set once the command line has been parsed and a command's
	// own code runs: errors before that are usage errors.
	started bool
}

// Main runs the durio command with args (without the program name) and
// returns its exit code. Errors are printed to stderr.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.LookupEnv}
	root := c.rootCommand()
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	if !c.started && !errors.Is(err, durio.ErrConfig) && !errors.Is(err, durio.ErrUsage) {
		err = fmt.Errorf("%w: %w", durio.ErrUsage, err)
	}
	msg := strings.TrimPrefix(err.Error(), "usage: ")
	if !strings.HasPrefix(msg, "durio") {
		msg = "durio: " + msg
	}
	// Errors of package durio begin with "durio: " too; once wrapped (as
	// "FILE: durio: bad snapshot: ..."), the line would say it twice.
	msg = strings.ReplaceAll(msg, ": durio: ", ": ")
	fmt.Fprintln(stderr, msg)
	if errors.Is(err, durio.ErrUsage) {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return ExitCode(err)
}

// NewCommand returns the durio command tree (for documentation generators
// and tests); Main runs it.
func NewCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	return (&cli{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.LookupEnv}).rootCommand()
}

func (c *cli) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "durio",
		Short: "durio: a replicated key-value store",
		Long: `durio is a replicated key-value store built on Raft. Run three replicas
(durio serve) or a local cluster (durio dev), then read and write keys with
the client commands or over HTTP.

Every flag can also be set by an environment variable: DURIO_ and the flag's
name in capitals with - as _, e.g. DURIO_ENDPOINTS for --endpoints. A flag
on the command line wins over the environment.

Put -- before values that begin with -: durio put temp -- -5.

` + exitCodesHelp,
		Version:       shortVersion(),
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := c.applyEnv(cmd.Flags()); err != nil {
				return err
			}
			c.started = true
			return nil
		},
	}
	root.SetIn(c.stdin)
	root.SetOut(c.stdout)
	root.SetErr(c.stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		if strings.Contains(err.Error(), "shorthand flag") {
			return fmt.Errorf("%w: %v (put -- before values that begin with -)", durio.ErrUsage, err)
		}
		return fmt.Errorf("%w: %v", durio.ErrUsage, err)
	})
	root.AddGroup(&cobra.Group{ID: "kv", Title: "Keys:"}, &cobra.Group{ID: "cluster", Title: "Cluster:"})
	for _, cmd := range []*cobra.Command{c.getCommand(), c.putCommand("put"), c.putCommand("append"), c.deleteCommand(),
		c.txnCommand(), c.listCommand(), c.watchCommand(), c.leaseCommand()} {
		cmd.GroupID = "kv"
		root.AddCommand(cmd)
	}
	for _, cmd := range []*cobra.Command{c.serveCommand(), c.devCommand(), c.statusCommand(), c.memberCommand(), c.benchCommand(), c.certsCommand(), c.tokenCommand()} {
		cmd.GroupID = "cluster"
		root.AddCommand(cmd)
	}
	snap := c.snapshotCommand()
	snap.GroupID = "cluster"
	root.AddCommand(snap, c.versionCommand())
	documentEnv(root)
	return root
}

// applyEnv sets every flag not given on the command line from its
// environment variable, if that is set.
func (c *cli) applyEnv(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" || f.Name == "version" {
			return
		}
		name := envName(f.Name)
		if v, ok := c.getenv(name); ok {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("%w: %s=%q: %v", durio.ErrUsage, name, v, serr)
			}
		}
	})
	return err
}

// documentEnv appends each flag's environment variable to its help text.
func documentEnv(cmd *cobra.Command) {
	cmd.LocalFlags().VisitAll(func(f *pflag.Flag) {
		f.Usage += " [$" + envName(f.Name) + "]"
	})
	for _, sub := range cmd.Commands() {
		documentEnv(sub)
	}
}

// exactArgs is cobra.ExactArgs with the arguments named in the error.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(names) == 0 && len(args) > 0 {
			return fmt.Errorf("%w: %s takes no arguments, got %q", durio.ErrUsage, cmd.CommandPath(), args)
		}
		if len(args) != len(names) {
			return fmt.Errorf("%w: %s takes %d argument(s) (%s), got %d", durio.ErrUsage,
				cmd.CommandPath(), len(names), strings.Join(names, " "), len(args))
		}
		return nil
	}
}

// clientFlags are the flags of every command that talks to a cluster.
type clientFlags struct {
	endpoints string
	json      bool
	timeout   time.Duration
	caCert    string
	insecure  bool
	tokenFile string
}

// defaultCLITimeout is how long a client command waits by default: longer
// than a replica's default --request-timeout (5s), so that when the cluster
// cannot serve, its own answer (503 no leader) reaches the user rather than a
// bare local timeout.
const defaultCLITimeout = 12 * time.Second

func (f *clientFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.endpoints, "endpoints", strings.Join(devEndpoints, ","), "comma-separated client `URLs` of the replicas (any will do)")
	fs.BoolVar(&f.json, "json", false, "print JSON instead of text")
	fs.DurationVar(&f.timeout, "timeout", defaultCLITimeout, "give up after this `duration` (keep it above the replicas' --request-timeout)")
	fs.StringVar(&f.caCert, "cacert", "", "PEM `file` of the CA that signed the replicas' TLS certificates (https endpoints)")
	fs.BoolVar(&f.insecure, "insecure-skip-verify", false, "do not verify the replicas' TLS certificates (testing only)")
	fs.StringVar(&f.tokenFile, "token-file", "", "`file` holding the client token to send (replicas with --client-auth-file)")
}

// httpClient is the HTTP client for the endpoints, with the TLS settings the
// flags ask for.
func (f *clientFlags) httpClient() (*http.Client, error) {
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: f.insecure} //nolint:gosec // opt-in, documented as testing only
	if f.caCert != "" {
		pem, err := os.ReadFile(f.caCert)
		if err != nil {
			return nil, fmt.Errorf("%w: --cacert: %v", durio.ErrUsage, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: --cacert: %s holds no PEM certificate", durio.ErrUsage, f.caCert)
		}
		tlsConfig.RootCAs = pool
	}
	hc := &http.Client{Transport: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsConfig,
		TLSHandshakeTimeout: 5 * time.Second,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}}
	return withTokenFile(hc, f.tokenFile)
}

// withTokenFile is hc sending the token held in file (surrounding
// whitespace ignored) with every request; hc itself if file is "".
func withTokenFile(hc *http.Client, file string) (*http.Client, error) {
	if file == "" {
		return hc, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%w: --token-file: %v", durio.ErrUsage, err)
	}
	hc, err = client.WithToken(hc, strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("%w: --token-file %s: %v", durio.ErrUsage, file, err)
	}
	return hc, nil
}

// check validates --timeout and --endpoints.
func (f *clientFlags) check() error {
	if f.timeout <= 0 {
		return fmt.Errorf("%w: --timeout must be positive", durio.ErrUsage)
	}
	endpoints := splitList(f.endpoints)
	if len(endpoints) == 0 {
		return fmt.Errorf("%w: --endpoints: no URL given", durio.ErrUsage)
	}
	for _, e := range endpoints {
		if strings.Contains(e, "://") && !strings.HasPrefix(e, "http://") && !strings.HasPrefix(e, "https://") {
			return fmt.Errorf("%w: --endpoints: %q is not an http(s) URL", durio.ErrUsage, e)
		}
	}
	return nil
}

// context bounds ctx by --timeout.
func (f *clientFlags) context(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, f.timeout)
}

// client connects to the endpoints and returns a context bounded by
// --timeout.
func (f *clientFlags) client(ctx context.Context) (*client.Client, context.Context, context.CancelFunc, error) {
	if err := f.check(); err != nil {
		return nil, nil, nil, err
	}
	hc, err := f.httpClient()
	if err != nil {
		return nil, nil, nil, err
	}
	cl, err := client.New(splitList(f.endpoints), client.Options{HTTPClient: hc})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: --endpoints: %v", durio.ErrUsage, err)
	}
	ctx, cancel := f.context(ctx)
	return cl, ctx, cancel, nil
}

// explain turns a client error into the message the user sees: the
// cluster's own answer if there was one, and how long we waited.
func (f *clientFlags) explain(err error) error {
	if err == nil || errors.Is(err, client.ErrNotFound) {
		return err
	}
	if errors.Is(err, http.ErrSchemeMismatch) {
		return fmt.Errorf("TLS: %w (the endpoint serves plain HTTP: give it as http://)", err)
	}
	if kvwire.TLSRejected(err) {
		return fmt.Errorf("TLS: %w (use --cacert with the CA that signed the replicas' certificates)", err)
	}
	var terr twirp.Error
	if errors.As(err, &terr) && !kvwire.NoAnswer(terr) {
		switch terr.Code() {
		case twirp.Unauthenticated:
			if f.tokenFile == "" {
				return fmt.Errorf("%w (give --token-file with a token from the replicas' --client-auth-file)", err)
			}
			return fmt.Errorf("%w (the token in --token-file %s is not one the replicas know)", err, f.tokenFile)
		case twirp.PermissionDenied:
			switch terr.Meta(kvwire.MetaReason) {
			case durio.ReasonOutOfScope:
				return fmt.Errorf("%w (the token in --token-file is limited to a key prefix: use one whose prefix covers these keys)", err)
			case durio.ReasonUnknownHost:
				return fmt.Errorf("%w (give --endpoints by IP address or as the replicas' client URLs)", err)
			}
			return fmt.Errorf("%w (use a token with a higher role in --token-file)", err)
		}
	}
	if errors.Is(err, kvclient.ErrNoSpace) {
		return fmt.Errorf("%w (delete keys to make room, or raise the replicas' --quota-bytes)", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		if errors.As(err, &terr) && !kvwire.NoAnswer(terr) {
			return fmt.Errorf("gave up after --timeout %v; the cluster's last answer: %w", f.timeout, terr)
		}
		return fmt.Errorf("no answer within --timeout %v: %w", f.timeout, err)
	}
	return err
}

func (f *clientFlags) print(w io.Writer, text string, v any) error {
	if f.json {
		return json.NewEncoder(w).Encode(v)
	}
	_, err := fmt.Fprintln(w, text)
	return err
}

func (c *cli) getCommand() *cobra.Command {
	var cf clientFlags
	var stale bool
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Print a key's value",
		Long: `Print a key's value, read linearizably through the leader (or, with --stale,
from the first endpoint's local state). Exits 3 if the key does not exist.
--json prints the key with its create_revision, mod_revision (the value for
put --if-revision), version and lease, and the store revision of the read
(the --index for durio watch).`,
		Example: `  durio get greeting
  durio get config/db/host --json
  DURIO_ENDPOINTS=https://pi1:8080 durio get greeting --cacert ca.pem`,
		Args: exactArgs("KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, ctx, cancel, err := cf.client(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			if stale {
				v, err := cl.GetStaleAt(ctx, 0, args[0])
				if err != nil {
					return cf.explain(err)
				}
				return cf.print(c.stdout, v, map[string]string{"key": args[0], "value": v})
			}
			kv, rev, err := cl.GetKV(ctx, args[0])
			if err != nil {
				return cf.explain(err)
			}
			return cf.print(c.stdout, kv.Value, struct {
				jsonKV
				Revision uint64 `json:"revision"`
			}{toJSONKV(kv, true), rev})
		},
	}
	cf.register(cmd.Flags())
	cmd.Flags().BoolVar(&stale, "stale", false, "read the first endpoint's local state: no leader round trip, may be out of date")
	return cmd
}

func (c *cli) putCommand(name string) *cobra.Command {
	var cf clientFlags
	var cond conditionFlags
	var lf leaseFlags
	short, long := "Set a key", "Set KEY to VALUE."
	if name == "append" {
		short, long = "Append to a key's value", "Append VALUE to KEY's value (a missing key counts as empty)."
	}
	cmd := &cobra.Command{
		Use:   name + " KEY VALUE",
		Short: short,
		Long: long + ` A VALUE of - reads the value from standard input,
byte for byte (a trailing newline is kept). Values must be UTF-8 text.
The write carries a client id and sequence number, so the client's own
retries after a lost answer apply it at most once.`,
		Example: fmt.Sprintf(`  durio %[1]s greeting hello
  durio %[1]s temp -- -5
  durio %[1]s config/app.yaml - < app.yaml`, name),
		Args: exactArgs("KEY", "VALUE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := cond.options(cmd.Flags())
			if err != nil {
				return err
			}
			if err := lf.check(cmd.Flags()); err != nil {
				return err
			}
			value := args[1]
			if value == "-" {
				v, err := readValue(c.stdin, durio.DefaultLimits().MaxValueBytes)
				if err != nil {
					return err
				}
				value = v
			}
			cl, ctx, cancel, err := cf.client(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			if name == "append" {
				if err := cl.Append(ctx, args[0], value); err != nil {
					return cf.explain(err)
				}
				return cf.print(c.stdout, "OK", map[string]bool{"ok": true})
			}
			return c.put(cmd, &cf, &lf, cl, ctx, args[0], value, opts)
		},
	}
	cf.register(cmd.Flags())
	if name == "put" {
		cmd.Long += `

With --if-absent, --if-revision, --if-version or --if-value the put is a
compare-and-swap: it applies only if the condition holds when the cluster
applies it, and otherwise changes nothing, prints the key's current state
and exits ` + strconv.Itoa(ExitConditionFailed) + `. --ttl attaches the key to a new lease that ends (deleting the
key) unless kept alive; --keep-alive keeps it alive until Ctrl-C, then
revokes it, so the key lives exactly as long as this command (or at most
--ttl longer, if the command is killed). A put that fails, or is
interrupted before its answer (exit 1), revokes its lease as well before
the command exits.`
		cmd.Example += `
  durio put lock/db me --if-absent
  durio put config/db/host db2 --if-revision 41
  durio put presence/alice online --ttl 10s --keep-alive`
		cond.register(cmd.Flags(), true)
		lf.register(cmd.Flags())
	}
	return cmd
}

// conditionFlags are the compare-and-swap flags of put and delete.
type conditionFlags struct {
	absent            bool
	revision, version uint64
	value             string
}

func (f *conditionFlags) register(fs *pflag.FlagSet, put bool) {
	if put {
		fs.BoolVar(&f.absent, "if-absent", false, "write only if the key does not exist (create)")
	}
	fs.Uint64Var(&f.revision, "if-revision", 0, "write only if the key exists and was last changed at this `revision` (its mod_revision)")
	fs.Uint64Var(&f.version, "if-version", 0, "write only if the key's `version` (changes since creation) is this; 0 means absent")
	fs.StringVar(&f.value, "if-value", "", "write only if the key exists with this `value`")
}

// options builds the write's condition from the flags given; at most one.
func (f *conditionFlags) options(fs *pflag.FlagSet) (client.WriteOptions, error) {
	var conds []client.Condition
	if fs.Changed("if-absent") && f.absent {
		conds = append(conds, client.IfAbsent())
	}
	if fs.Changed("if-revision") {
		if f.revision == 0 {
			return client.WriteOptions{}, fmt.Errorf("%w: --if-revision must be positive (use --if-absent for a missing key)", durio.ErrUsage)
		}
		conds = append(conds, client.IfModRevision(f.revision))
	}
	if fs.Changed("if-version") {
		conds = append(conds, client.IfVersion(f.version))
	}
	if fs.Changed("if-value") {
		conds = append(conds, client.IfValue(f.value))
	}
	switch len(conds) {
	case 0:
		return client.WriteOptions{}, nil
	case 1:
		return client.WriteOptions{Condition: conds[0]}, nil
	}
	return client.WriteOptions{}, fmt.Errorf("%w: give at most one of --if-absent, --if-revision, --if-version and --if-value", durio.ErrUsage)
}

// explainCondition describes a failed condition with the key's state.
func explainCondition(err error) error {
	var cf *client.ConditionFailedError
	if !errors.As(err, &cf) {
		return err
	}
	if cf.Current == nil {
		return fmt.Errorf("%w: the key does not exist (store revision %d)", client.ErrConditionFailed, cf.Revision)
	}
	return fmt.Errorf("%w: the key is at revision %d, version %d, value %q (store revision %d)", client.ErrConditionFailed,
		cf.Current.ModRevision, cf.Current.Version, truncate(cf.Current.Value, 200), cf.Revision)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}

// readValue reads a value from r: at most limit bytes of UTF-8.
func readValue(r io.Reader, limit int) (string, error) {
	data, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return "", fmt.Errorf("reading the value from standard input: %w", err)
	}
	if len(data) > limit {
		return "", fmt.Errorf("%w: the value on standard input is longer than %d bytes", durio.ErrUsage, limit)
	}
	if !utf8.Valid(data) {
		return "", fmt.Errorf("%w: the value on standard input is not UTF-8 text", durio.ErrUsage)
	}
	return string(data), nil
}

func (c *cli) deleteCommand() *cobra.Command {
	var cf clientFlags
	var cond conditionFlags
	cmd := &cobra.Command{
		Use:   "delete KEY",
		Short: "Delete a key",
		Long: `Delete KEY. Prints "deleted", or "not found" if it did not exist (exit 0 either way).
With --if-revision, --if-version or --if-value it deletes only if the
condition holds, and otherwise changes nothing, prints the key's current
state and exits ` + strconv.Itoa(ExitConditionFailed) + `.`,
		Example: "  durio delete greeting\n  durio delete lock/db --if-value me",
		Args:    exactArgs("KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := cond.options(cmd.Flags())
			if err != nil {
				return err
			}
			cl, ctx, cancel, err := cf.client(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			existed, rev, err := cl.DeleteWith(ctx, args[0], opts)
			if err != nil {
				return explainCondition(cf.explain(err))
			}
			return cf.print(c.stdout, map[bool]string{true: "deleted", false: "not found"}[existed],
				map[string]any{"ok": true, "existed": existed, "revision": rev})
		},
	}
	cf.register(cmd.Flags())
	cond.register(cmd.Flags(), false)
	return cmd
}

func (c *cli) statusCommand() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each replica's role, term and indexes",
		Long: `Ask every endpoint for its status: id, role, term, commit and applied
index, the leader it knows, whether it is a voter or a learner (with how far
behind the leader it is), and whether it answered. The endpoints are the
cluster's members as the cluster lists them (their client URLs), or the
--endpoints given if it cannot say. Exits 4 if no endpoint answered.`,
		Example: "  durio status --endpoints http://192.168.1.10:8080,http://192.168.1.11:8080,http://192.168.1.12:8080",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, ctx, cancel, err := cf.client(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			// Best effort: a cluster that cannot list its members still
			// shows the endpoints given.
			var members []client.Member
			rctx, rcancel := context.WithTimeout(ctx, cf.timeout/2)
			if err := cl.Refresh(rctx); err == nil {
				members, _, _ = cl.MemberList(rctx)
			}
			rcancel()
			return printStatus(ctx, cl, members, cf.json, c.stdout)
		},
	}
	cf.register(cmd.Flags())
	return cmd
}

// replicaStatus is one line of `durio status`.
type replicaStatus struct {
	Endpoint  string `json:"endpoint"`
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
	ID        uint32 `json:"id"`
	Role      string `json:"role"`
	Term      uint64 `json:"term"`
	Commit    uint64 `json:"commit"`
	Applied   uint64 `json:"applied"`
	Leader    *int64 `json:"leader"`
	// Member is voter or learner ("" if unknown or not a member), and Lag
	// how many entries it is behind the leader, when the leader said.
	Member string  `json:"member,omitempty"`
	Lag    *uint64 `json:"lag_entries,omitempty"`
	// Removed: the replica knows it was removed from the cluster.
	Removed bool `json:"removed,omitempty"`
	// ApplyLevel is the apply level in force in the replica's state,
	// MaxApplyLevel the highest its version supports.
	ApplyLevel    uint32 `json:"apply_level"`
	MaxApplyLevel uint32 `json:"max_apply_level"`
	// StateBytes is the size of the replica's keys and values as the quota
	// counts it, QuotaBytes its --quota-bytes (0: none).
	StateBytes uint64 `json:"state_bytes"`
	QuotaBytes uint64 `json:"quota_bytes"`
}

// dataText is the DATA column: the state's size, and its share of the
// quota.
func (r replicaStatus) dataText() string {
	if r.QuotaBytes == 0 {
		return humanBytes(r.StateBytes)
	}
	return fmt.Sprintf("%s of %s (%d%%)", humanBytes(r.StateBytes), humanBytes(r.QuotaBytes), r.StateBytes*100/r.QuotaBytes)
}

// humanBytes writes n in B, KiB, MiB or GiB, with one decimal above B.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, suffix := float64(n)/unit, "KiB"
	for _, s := range []string{"MiB", "GiB", "TiB"} {
		if v < unit {
			break
		}
		v, suffix = v/unit, s
	}
	return fmt.Sprintf("%.1f %s", v, suffix)
}

// memberText is the MEMBER column: voter or learner, with how far
// behind the leader it is.
func (r replicaStatus) memberText() string {
	switch {
	case r.Removed && r.Member == "":
		return "removed from cluster"
	case r.Member == "":
		return "-"
	case r.Lag != nil && *r.Lag > 0:
		return r.Member + fmt.Sprintf(" (%d behind)", *r.Lag)
	}
	return r.Member
}

// printStatus prints one line per endpoint, then one per member that no
// endpoint stands for; its error wraps errNoneReachable if no endpoint
// answered.
func printStatus(ctx context.Context, c *client.Client, members []client.Member, asJSON bool, w io.Writer) error {
	rows := make([]replicaStatus, len(c.Endpoints()))
	var errs []error
	for i, ep := range c.Endpoints() {
		rows[i] = replicaStatus{Endpoint: ep}
		st, err := c.StatusOf(ctx, i)
		if err != nil {
			rows[i].Error = err.Error()
			errs = append(errs, err)
			continue
		}
		rows[i].Reachable = true
		rows[i].ID = st.GetReplicaId()
		rows[i].Role = roleName(st.GetRole())
		rows[i].Term = st.GetTerm()
		rows[i].Commit = st.GetCommitIndex()
		rows[i].Applied = st.GetAppliedIndex()
		if st.GetLeaderKnown() {
			id := int64(st.GetLeaderId())
			rows[i].Leader = &id
		}
		if st.GetError() != "" {
			rows[i].Error = st.GetError()
		}
		rows[i].Removed = st.GetRemoved()
		rows[i].ApplyLevel, rows[i].MaxApplyLevel = st.GetApplyLevel(), st.GetMaxApplyLevel()
		rows[i].StateBytes, rows[i].QuotaBytes = st.GetStateBytes(), st.GetQuotaBytes()
		for _, m := range members {
			if m.ID == int(rows[i].ID) {
				rows[i].Member = durio.MemberRole(m.Learner)
				if m.ProgressKnown {
					lag := m.Lag
					rows[i].Lag = &lag
				}
			}
		}
	}
	rows = append(rows, membersWithoutEndpoint(rows, members)...)
	if asJSON {
		if err := json.NewEncoder(w).Encode(rows); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ENDPOINT\tID\tROLE\tMEMBER\tTERM\tCOMMIT\tAPPLIED\tLEADER\tLEVEL\tDATA\tREACHABLE")
		for _, r := range rows {
			if !r.Reachable && r.Member != "" {
				// A member no endpoint stands for: what the leader says.
				fmt.Fprintf(tw, "%s\t%d\t-\t%s\t-\t-\t-\t-\t-\t-\tno (%s)\n", cmp.Or(r.Endpoint, "-"), r.ID, r.memberText(), r.Error)
				continue
			}
			if !r.Reachable {
				fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\tno (%s)\n", r.Endpoint, r.Error)
				continue
			}
			leader := "none"
			if r.Leader != nil {
				leader = fmt.Sprint(*r.Leader)
			}
			member := r.memberText()
			// The level in force, and what the version supports when it is
			// more: a rolling upgrade that has not completed.
			level := fmt.Sprint(r.ApplyLevel)
			if r.MaxApplyLevel > r.ApplyLevel {
				level += fmt.Sprintf(" (supports %d)", r.MaxApplyLevel)
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\tyes\n", r.Endpoint, r.ID, r.Role, member, r.Term, r.Commit, r.Applied, leader, level, r.dataText())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(errs) == len(c.Endpoints()) {
		return fmt.Errorf("%w (of %d)", errNoneReachable, len(c.Endpoints()))
	}
	return nil
}

// membersWithoutEndpoint returns a row for each member that no row
// stands for: one added without a client URL (a learner being caught up,
// say) is not asked, but it is part of the cluster, and the leader says
// how far behind it is.
func membersWithoutEndpoint(rows []replicaStatus, members []client.Member) []replicaStatus {
	var out []replicaStatus
	for _, m := range members {
		shown := false
		for _, r := range rows {
			if (r.Reachable && int(r.ID) == m.ID) || (m.ClientURL != "" && r.Endpoint == m.ClientURL) {
				shown = true
			}
		}
		if shown {
			continue
		}
		r := replicaStatus{ID: uint32(m.ID), Member: durio.MemberRole(m.Learner), Error: "no client URL; peer " + m.PeerURL}
		if m.ClientURL != "" {
			r.Endpoint, r.Error = m.ClientURL, "not asked; peer "+m.PeerURL
		}
		if m.ProgressKnown {
			lag := m.Lag
			r.Lag = &lag
			if !m.RecentActive {
				r.Error += ", not heard from by the leader lately"
			}
		}
		out = append(out, r)
	}
	return out
}

func roleName(r kvv1.Role) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "ROLE_"))
}

func (c *cli) serveCommand() *cobra.Command {
	goFlags := flag.NewFlagSet("durio serve", flag.ContinueOnError)
	build := durio.RegisterServeFlags(goFlags)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run one replica",
		Long: `Run one replica until SIGTERM or SIGINT, then shut it down gracefully.
Settings come from the defaults, then the YAML file named by --config (same
keys as the flags), then DURIO_* environment variables, then flags.
Invalid configuration exits 2 with a message naming the field.`,
		Example: `  durio serve --config /etc/durio/durio.yaml
  durio serve --id 0 --peers http://10.0.0.1:9001,http://10.0.0.2:9001,http://10.0.0.3:9001 \
      --listen-client 0.0.0.0:8080 --data-dir /var/lib/durio`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := build(cmd.Flags().Changed)
			if err != nil {
				return err
			}
			return durio.Serve(cmd.Context(), cfg, c.stderr)
		},
	}
	cmd.Flags().AddGoFlagSet(goFlags)
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.DefValue == "0s" { // the help says what 0 means; pflag would print "(default 0s)"
			f.DefValue = "0"
		}
	})
	completeWords(cmd, "persister", "noop", "file", "badger")
	completeWords(cmd, "log-level", "debug", "info", "warn", "error")
	return cmd
}

// completeWords offers words as shell completions of a flag's value.
func completeWords(cmd *cobra.Command, flagName string, words ...string) {
	_ = cmd.RegisterFlagCompletionFunc(flagName, cobra.FixedCompletions(words, cobra.ShellCompDirectiveNoFileComp))
}

func (c *cli) devCommand() *cobra.Command {
	var o devOptions
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local cluster on loopback",
		Long: `Run a local cluster of durio serve processes on loopback, with data and one
log per replica under --dir, until Ctrl-C. It prints when a leader is
elected or lost, restarts a replica that exits by itself (giving up after
` + strconv.Itoa(devGiveUpAfter) + ` quick failures in a row), and reads commands from standard input
to kill, stop and start replicas, so you can watch a failover:

` + devHelp + `

Flags after -- are passed to every replica's durio serve (see durio serve
--help), except those durio dev sets itself (--id, --peers, --data-dir,
--persister, --log-level, the listeners and URLs, TLS).`,
		Example: "  durio dev\n  durio dev --persister file --replicas 5\n" +
			"  durio dev -- --election-timeout 500ms --heartbeat-interval 100ms --read-batch-window 0",
		Args: func(cmd *cobra.Command, args []string) error {
			before := args // arguments before --, if any
			if dash := cmd.ArgsLenAtDash(); dash >= 0 {
				before = args[:dash]
			}
			if len(before) > 0 {
				return fmt.Errorf("%w: %s takes no arguments, got %q (durio serve flags go after --)",
					durio.ErrUsage, cmd.CommandPath(), before)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.check(); err != nil {
				return err
			}
			o.ServeArgs = args
			o.Commands = c.stdin
			return runDev(cmd.Context(), o, c.stdout)
		},
	}
	o.register(cmd.Flags())
	completeWords(cmd, "persister", "noop", "file", "badger")
	completeWords(cmd, "log-level", "debug", "info", "warn", "error")
	return cmd
}

func (c *cli) benchCommand() *cobra.Command {
	var b benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Closed-loop load: ops/s and latency",
		Long: `Run a closed-loop load against a cluster over the Twirp protobuf API: each
of --clients goroutines keeps one request in flight. Prints ops/s and
p50/p99/p99.9 latency.`,
		Example: "  durio bench --clients 64 --duration 10s --op mixed --read-ratio 0.9",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, asJSON, err := b.options()
			if err != nil {
				return err
			}
			res, err := runBench(cmd.Context(), opts, c.stderr)
			if err != nil {
				return err
			}
			return printBench(c.stdout, res, asJSON)
		},
	}
	b.register(cmd.Flags())
	completeWords(cmd, "op", "put", "get", "mixed")
	return cmd
}
