package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ruaft/ruaft/durio"
	"github.com/ruaft/ruaft/durio/client"
	"github.com/ruaft/ruaft/kvraft/kvclient"
)

// The client commands of the revisioned API: list, watch, lease, and the
// lease part of put.

// leaseFlags are put's lease flags.
type leaseFlags struct {
	ttl       time.Duration
	lease     uint64
	keepAlive bool
}

func (f *leaseFlags) register(fs *pflag.FlagSet) {
	fs.DurationVar(&f.ttl, "ttl", 0, "attach the key to a new lease of this `duration` (at least 1s): the key is deleted when it ends")
	fs.Uint64Var(&f.lease, "lease", 0, "attach the key to this existing lease `id` (see durio lease grant)")
	fs.BoolVar(&f.keepAlive, "keep-alive", false, "with --ttl: keep the lease alive until Ctrl-C, then revoke it (deleting the key)")
}

func (f *leaseFlags) check(fs *pflag.FlagSet) error {
	switch {
	case fs.Changed("ttl") && f.ttl < time.Second:
		return fmt.Errorf("%w: --ttl must be at least 1s", durio.ErrUsage)
	case f.ttl != 0 && f.lease != 0:
		return fmt.Errorf("%w: give --ttl or --lease, not both", durio.ErrUsage)
	case f.keepAlive && f.ttl == 0:
		return fmt.Errorf("%w: --keep-alive needs --ttl", durio.ErrUsage)
	}
	return nil
}

// put runs `durio put` once its flags are checked.
func (c *cli) put(cmd *cobra.Command, cf *clientFlags, lf *leaseFlags, cl *client.Client, ctx context.Context, key, value string, opts client.WriteOptions) error {
	opts.Lease = lf.lease
	var ttl time.Duration
	if lf.ttl > 0 {
		// Should the put fail, the new lease simply expires unused.
		id, got, err := cl.LeaseGrant(ctx, lf.ttl)
		if err != nil {
			return cf.explain(err)
		}
		opts.Lease, ttl = id, got
	}
	rev, err := cl.PutWith(ctx, key, value, opts)
	if err != nil {
		err = explainCondition(cf.explain(err))
		if lf.keepAlive {
			return c.abandonLease(cmd.Context(), cf, cl, opts.Lease, err)
		}
		return err
	}
	text, out := "OK", map[string]any{"ok": true, "revision": rev}
	if lf.ttl > 0 {
		text = fmt.Sprintf("OK (lease %d, ttl %v)", opts.Lease, ttl)
		out["lease"], out["ttl_ms"] = opts.Lease, ttl.Milliseconds()
	}
	if err := cf.print(c.stdout, text, out); err != nil {
		return err
	}
	if !lf.keepAlive {
		return nil
	}
	// Until Ctrl-C (the command's context), not --timeout.
	if err := cl.KeepAlive(cmd.Context(), opts.Lease, ttl); err != nil {
		return fmt.Errorf("the key's lease was lost: %w", err)
	}
	rctx, cancel := context.WithTimeout(context.Background(), cf.timeout)
	defer cancel()
	if _, err := cl.LeaseRevoke(rctx, opts.Lease); err != nil {
		return fmt.Errorf("revoking lease %d (the key goes when its ttl ends): %w", opts.Lease, cf.explain(err))
	}
	return nil
}

// abandonRevokeTimeout bounds the revoke of a lease whose put failed: the
// user is waiting for the command to end (often after Ctrl-C).
const abandonRevokeTimeout = 5 * time.Second

// errInterrupted is the error of a put --keep-alive interrupted before its
// put was answered (exit 1: the outcome is neither success nor the
// cluster's fault).
var errInterrupted = errors.New("interrupted before the put was answered")

// abandonLease revokes the lease of a put --keep-alive whose put failed
// (putErr), interrupted or not: the command will not keep it alive, and a
// put whose outcome is unknown may have attached the key to it, which would
// then outlive the command by up to the lease's TTL. The revoke runs under
// its own context, since cmdCtx is cancelled when the command was
// interrupted.
func (c *cli) abandonLease(cmdCtx context.Context, cf *clientFlags, cl *client.Client, lease uint64, putErr error) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(cmdCtx), min(cf.timeout, abandonRevokeTimeout))
	defer cancel()
	_, rerr := cl.LeaseRevoke(rctx, lease)
	interrupted := cmdCtx.Err() != nil
	switch {
	case interrupted && rerr == nil:
		return fmt.Errorf("%w; revoked its lease %d, so the key is not left behind", errInterrupted, lease)
	case interrupted:
		return fmt.Errorf("%w, and revoking its lease %d failed (if the put applied, the key stays until the lease's ttl ends): %w",
			errInterrupted, lease, cf.explain(rerr))
	case rerr != nil:
		fmt.Fprintf(c.stderr, "durio: revoking lease %d after the failed put: %v (if the put applied, the key stays until the lease's ttl ends)\n",
			lease, cf.explain(rerr))
	}
	return putErr
}

// jsonKV is a key in the --json output of get, list and watch.
type jsonKV struct {
	Key            string  `json:"key"`
	Value          *string `json:"value,omitempty"`
	CreateRevision uint64  `json:"create_revision,omitempty"`
	ModRevision    uint64  `json:"mod_revision"`
	Version        uint64  `json:"version,omitempty"`
	Lease          uint64  `json:"lease,omitempty"`
}

func toJSONKV(kv client.KeyValue, withValue bool) jsonKV {
	out := jsonKV{Key: kv.Key, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Version: kv.Version, Lease: kv.Lease}
	if withValue {
		v := kv.Value
		out.Value = &v
	}
	return out
}

// printable shows a value on one line: as it is, or Go-quoted if it holds
// a newline, tab or other control character.
func printable(v string) string {
	if strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return strconv.Quote(v)
	}
	return v
}

func (c *cli) listCommand() *cobra.Command {
	var cf clientFlags
	var (
		limit    int
		keysOnly bool
		stale    bool
		revision uint64
	)
	cmd := &cobra.Command{
		Use:   "list [PREFIX]",
		Short: "List the keys under a prefix",
		Long: `List the keys that start with PREFIX (every key if none), in increasing byte
order, one per line with its value after a tab (values with control
characters are quoted). The listing is read page by page at one store
revision, linearizably unless --stale, so it is a consistent snapshot
even while keys change. --json prints {"revision", "kvs": [...]} with each
key's create_revision, mod_revision and version.`,
		Example: `  durio list config/
  durio list users/ --keys-only --limit 100
  durio list --json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 0 {
				return fmt.Errorf("%w: --limit must not be negative", durio.ErrUsage)
			}
			cl, ctx, cancel, err := cf.client(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			req := client.ListRequest{KeysOnly: keysOnly, Revision: revision}
			if len(args) == 1 {
				req.Prefix = args[0]
			}
			if stale {
				req.Consistency = kvclient.Stale
			}
			var kvs []jsonKV
			n := 0
			for {
				if limit > 0 {
					req.Limit = min(limit-n, kvclient.DefaultListLimit)
				}
				page, err := cl.List(ctx, req)
				if err != nil {
					return cf.explain(err)
				}
				req.Revision = page.Revision
				for _, kv := range page.KVs {
					n++
					if cf.json {
						kvs = append(kvs, toJSONKV(kv, !keysOnly))
					} else if keysOnly {
						fmt.Fprintln(c.stdout, kv.Key)
					} else {
						fmt.Fprintf(c.stdout, "%s\t%s\n", kv.Key, printable(kv.Value))
					}
				}
				if !page.More || len(page.KVs) == 0 || (limit > 0 && n >= limit) {
					break
				}
				req.After = page.KVs[len(page.KVs)-1].Key
			}
			if cf.json {
				if kvs == nil {
					kvs = []jsonKV{}
				}
				return json.NewEncoder(c.stdout).Encode(map[string]any{"revision": req.Revision, "kvs": kvs})
			}
			return nil
		},
	}
	cf.register(cmd.Flags())
	fs := cmd.Flags()
	fs.IntVar(&limit, "limit", 0, "list at most `n` keys (0: all)")
	fs.BoolVar(&keysOnly, "keys-only", false, "print the keys only")
	fs.BoolVar(&stale, "stale", false, "read an endpoint's local state: no leader round trip, may be out of date")
	fs.Uint64Var(&revision, "revision", 0, "list the keys as they were at this store `revision` (while it is retained)")
	return cmd
}

func (c *cli) watchCommand() *cobra.Command {
	var cf clientFlags
	var (
		prefix bool
		index  uint64
		stream bool
	)
	cmd := &cobra.Command{
		Use:   "watch KEY",
		Short: "Print every change of a key or prefix as it happens",
		Long: `Follow KEY (or, with --prefix, every key under it) and print each change as
it happens, in revision order: "PUT key value (revision N)" or
"DELETE key (revision N)"; --json prints one object per line. It starts
after --index (a store revision, e.g. from durio get --json), or from now.
It survives replica failures and leader changes without losing or
repeating a change, and runs until Ctrl-C (exit 0). If the cluster no
longer keeps the history after the revision to resume from, it exits 1.
It follows one replica's stream of changes (server-sent events);
--stream=false makes it ask with long polls (Twirp Watch) instead.`,
		Example: `  durio watch config/db/host
  durio watch users/ --prefix --json
  durio watch jobs/ --prefix --index 1200`,
		Args: exactArgs("KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == "" && !prefix {
				return fmt.Errorf("%w: KEY must not be empty (use --prefix with \"\" to watch every key)", durio.ErrUsage)
			}
			cl, ctx, cancel, err := cf.client(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			if !cmd.Flags().Changed("index") {
				if index, err = cl.Revision(ctx); err != nil {
					return cf.explain(err)
				}
			}
			follow := cl.Follow
			if stream {
				follow = cl.FollowStream
			}
			err = follow(cmd.Context(), args[0], prefix, index, func(ev client.Event) error {
				return printEvent(c.stdout, ev, cf.json)
			})
			if cmd.Context().Err() != nil {
				return nil // Ctrl-C
			}
			return err
		},
	}
	cf.register(cmd.Flags())
	cmd.Flags().BoolVar(&prefix, "prefix", false, "watch every key that starts with KEY")
	cmd.Flags().Uint64Var(&index, "index", 0, "print the changes after this store `revision` (default: from now)")
	cmd.Flags().BoolVar(&stream, "stream", true, "follow a replica's stream of changes; false: ask with long polls")
	return cmd
}

// printEvent prints one watch event.
func printEvent(w io.Writer, ev client.Event, asJSON bool) error {
	if asJSON {
		out := struct {
			Type string `json:"type"`
			jsonKV
		}{Type: "put", jsonKV: toJSONKV(ev.KV, ev.Type == client.EventPut)}
		if ev.Type == client.EventDelete {
			out.Type = "delete"
		}
		return json.NewEncoder(w).Encode(out)
	}
	var err error
	if ev.Type == client.EventDelete {
		_, err = fmt.Fprintf(w, "DELETE %s (revision %d)\n", ev.KV.Key, ev.KV.ModRevision)
	} else {
		_, err = fmt.Fprintf(w, "PUT %s %s (revision %d)\n", ev.KV.Key, printable(ev.KV.Value), ev.KV.ModRevision)
	}
	return err
}

func (c *cli) leaseCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lease",
		Short: "Grant, keep alive, revoke or show leases",
		Long: `A lease lives for its TTL unless kept alive; when it ends (expires or is
revoked) every key attached to it (durio put --lease ID) is deleted, on
every replica at the same point of the log. A new leader restarts every
lease's TTL, so a lease never ends sooner than promised.`,
	}
	parseID := func(s string) (uint64, error) {
		id, err := strconv.ParseUint(s, 10, 64)
		if err != nil || id == 0 {
			return 0, fmt.Errorf("%w: %q is not a lease id", durio.ErrUsage, s)
		}
		return id, nil
	}
	var grantFlags, keepFlags, revokeFlags, showFlags clientFlags
	grant := &cobra.Command{
		Use:     "grant TTL",
		Short:   "Create a lease and print its id",
		Example: "  id=$(durio lease grant 10s)\n  durio put presence/alice online --lease $id",
		Args:    exactArgs("TTL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ttl, err := time.ParseDuration(args[0])
			if err != nil || ttl < time.Second {
				return fmt.Errorf("%w: TTL %q must be a duration of at least 1s, like 10s", durio.ErrUsage, args[0])
			}
			cl, ctx, cancel, err := grantFlags.client(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			id, got, err := cl.LeaseGrant(ctx, ttl)
			if err != nil {
				return grantFlags.explain(err)
			}
			return grantFlags.print(c.stdout, strconv.FormatUint(id, 10), map[string]any{"id": id, "ttl_ms": got.Milliseconds()})
		},
	}
	var once bool
	keep := &cobra.Command{
		Use:   "keepalive ID",
		Short: "Keep a lease alive until Ctrl-C (or once, with --once)",
		Long: `Refresh the lease every third of its TTL until Ctrl-C (exit 0), or once with
--once. Exits 3 if the lease has ended.`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0])
			if err != nil {
				return err
			}
			cl, ctx, cancel, err := keepFlags.client(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			ttl, err := cl.LeaseKeepAlive(ctx, id)
			if err != nil {
				return keepFlags.explain(err)
			}
			if err := keepFlags.print(c.stdout, fmt.Sprintf("lease %d kept alive (ttl %v)", id, ttl),
				map[string]any{"id": id, "ttl_ms": ttl.Milliseconds()}); err != nil || once {
				return err
			}
			return cl.KeepAlive(cmd.Context(), id, ttl)
		},
	}
	keep.Flags().BoolVar(&once, "once", false, "refresh once and exit")
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "End a lease now, deleting its keys",
		Long:  `End the lease now and delete its keys. Prints "revoked", or "not found" (exit 0 either way).`,
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0])
			if err != nil {
				return err
			}
			cl, ctx, cancel, err := revokeFlags.client(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			existed, err := cl.LeaseRevoke(ctx, id)
			if err != nil {
				return revokeFlags.explain(err)
			}
			return revokeFlags.print(c.stdout, map[bool]string{true: "revoked", false: "not found"}[existed],
				map[string]any{"ok": true, "existed": existed})
		},
	}
	var keys bool
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show a lease's TTL, remaining time and keys",
		Long:  `Show the lease's TTL and the time left before it expires without a keep-alive. Exits 3 if it has ended.`,
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0])
			if err != nil {
				return err
			}
			cl, ctx, cancel, err := showFlags.client(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := cl.LeaseTimeToLive(ctx, id, keys)
			if err != nil {
				return showFlags.explain(err)
			}
			text := fmt.Sprintf("lease %d: ttl %v, %v left", id, resp.TTL, resp.Remaining.Round(time.Millisecond))
			if keys {
				if resp.MoreKeys {
					text += fmt.Sprintf(", more than %d keys; the first %d", len(resp.Keys), len(resp.Keys))
				} else {
					text += fmt.Sprintf(", %d key(s)", len(resp.Keys))
				}
				for _, k := range resp.Keys {
					text += "\n  " + k
				}
			}
			return showFlags.print(c.stdout, text, map[string]any{"id": id, "ttl_ms": resp.TTL.Milliseconds(),
				"remaining_ms": resp.Remaining.Milliseconds(), "keys": resp.Keys, "more_keys": resp.MoreKeys})
		},
	}
	show.Flags().BoolVar(&keys, "keys", false, "list the lease's keys")
	for cmdFlags, sub := range map[*clientFlags]*cobra.Command{&grantFlags: grant, &keepFlags: keep, &revokeFlags: revoke, &showFlags: show} {
		cmdFlags.register(sub.Flags())
		cmd.AddCommand(sub)
	}
	return cmd
}
