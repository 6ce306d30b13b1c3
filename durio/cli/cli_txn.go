package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ruaft/ruaft/durio"
	"github.com/ruaft/ruaft/durio/client"
)

// txnFlags are durio txn's conditions and writes, each flag repeatable.
type txnFlags struct {
	absent, revision, version, value []string
	put, del                         []string
	lease                            uint64
}

func (f *txnFlags) register(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.absent, "if-absent", nil, "condition: `KEY` does not exist (repeatable)")
	fs.StringArrayVar(&f.revision, "if-revision", nil, "condition: the key exists and was last changed at that revision (`KEY=REVISION`, repeatable)")
	fs.StringArrayVar(&f.version, "if-version", nil, "condition: the key's version is that (`KEY=VERSION`, 0 means absent; repeatable)")
	fs.StringArrayVar(&f.value, "if-value", nil, "condition: the key exists with that value (`KEY=VALUE`, repeatable)")
	fs.StringArrayVar(&f.put, "put", nil, "write: set the key (`KEY=VALUE`, repeatable)")
	fs.StringArrayVar(&f.del, "delete", nil, "write: delete `KEY` (repeatable)")
	fs.Uint64Var(&f.lease, "lease", 0, "attach every key the txn puts to this lease `ID`")
}

// request builds the conditions and writes: conditions in the order of the
// flags' kinds (absent, revision, version, value), puts before deletes.
func (f *txnFlags) request() ([]client.Compare, []client.TxnWrite, error) {
	var conds []client.Compare
	for _, key := range f.absent {
		conds = append(conds, client.Compare{Key: key, Condition: client.IfAbsent()})
	}
	for _, kinds := range []struct {
		flag  string
		args  []string
		build func(string) (client.Condition, error)
	}{
		{"--if-revision", f.revision, func(v string) (client.Condition, error) {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil || n == 0 {
				return client.Condition{}, fmt.Errorf("the revision %q is not a positive number (use --if-absent for a missing key)", v)
			}
			return client.IfModRevision(n), nil
		}},
		{"--if-version", f.version, func(v string) (client.Condition, error) {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return client.Condition{}, fmt.Errorf("the version %q is not a number", v)
			}
			return client.IfVersion(n), nil
		}},
		{"--if-value", f.value, func(v string) (client.Condition, error) { return client.IfValue(v), nil }},
	} {
		for _, arg := range kinds.args {
			key, v, ok := strings.Cut(arg, "=")
			if !ok {
				return nil, nil, fmt.Errorf("%w: %s %q: want KEY=...", durio.ErrUsage, kinds.flag, arg)
			}
			cond, err := kinds.build(v)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: %s %s: %v", durio.ErrUsage, kinds.flag, arg, err)
			}
			conds = append(conds, client.Compare{Key: key, Condition: cond})
		}
	}
	var writes []client.TxnWrite
	for _, arg := range f.put {
		key, v, ok := strings.Cut(arg, "=")
		if !ok {
			return nil, nil, fmt.Errorf("%w: --put %q: want KEY=VALUE", durio.ErrUsage, arg)
		}
		w := client.TxnPut(key, v)
		w.Lease = f.lease
		writes = append(writes, w)
	}
	for _, key := range f.del {
		writes = append(writes, client.TxnDelete(key))
	}
	if len(writes) == 0 {
		return nil, nil, fmt.Errorf("%w: give at least one --put or --delete", durio.ErrUsage)
	}
	return conds, writes, nil
}

func (c *cli) txnCommand() *cobra.Command {
	var cf clientFlags
	var tf txnFlags
	cmd := &cobra.Command{
		Use:   "txn",
		Short: "Write several keys at once if conditions hold",
		Long: `Write several keys atomically: if every condition holds, every write is applied
(each key at its own, consecutive revision; puts first, then deletes, each in
the order given), exactly once; otherwise none is, and durio prints the
conditions that failed with the compared keys' current state and exits ` + strconv.Itoa(ExitConditionFailed) + `.
A key may be written once per txn. KEY=... splits at the first "=", so a key
holding "=" cannot be given here (use the REST or Twirp API).`,
		Example: `  durio txn --if-revision acct/a=41 --if-revision acct/b=40 --put acct/a=90 --put acct/b=110
  durio txn --if-absent lock/db --put lock/db=me --put owner/db=me
  durio txn --if-value state=draft --put state=published --delete draft/1`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			conds, writes, err := tf.request()
			if err != nil {
				return err
			}
			cl, ctx, cancel, err := cf.client(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := cl.Txn(ctx, conds, writes...)
			if err != nil {
				return cf.explain(err)
			}
			out := map[string]any{"ok": resp.Succeeded, "succeeded": resp.Succeeded, "revision": resp.Header.Revision}
			text := fmt.Sprintf("ok (revision %d)", resp.Header.Revision)
			if !resp.Succeeded {
				current := make([]jsonKV, 0, len(resp.Current))
				var b strings.Builder
				fmt.Fprintf(&b, "not applied: at store revision %d", resp.Header.Revision)
				for _, i := range resp.Failed {
					if i >= 0 && i < len(conds) {
						fmt.Fprintf(&b, "\n  failed: %s", describeCompare(conds[i]))
					}
				}
				for _, kv := range resp.Current {
					current = append(current, toJSONKV(kv, true))
					fmt.Fprintf(&b, "\n  %s: revision %d, version %d, value %s", kv.Key, kv.ModRevision, kv.Version, printable(truncate(kv.Value, 200)))
				}
				out["failed"], out["current"] = resp.Failed, current
				text = b.String()
			}
			if err := cf.print(c.stdout, text, out); err != nil {
				return err
			}
			if !resp.Succeeded {
				return fmt.Errorf("%w: %d of %d conditions did not hold; nothing was written", client.ErrConditionFailed,
					len(resp.Failed), len(conds))
			}
			return nil
		},
	}
	cf.register(cmd.Flags())
	tf.register(cmd.Flags())
	return cmd
}

// describeCompare names a condition as its flag would.
func describeCompare(c client.Compare) string {
	switch c.Condition {
	case client.IfAbsent():
		return "--if-absent " + c.Key
	case client.IfModRevision(c.Condition.ModRevision):
		return fmt.Sprintf("--if-revision %s=%d", c.Key, c.Condition.ModRevision)
	case client.IfVersion(c.Condition.Version):
		return fmt.Sprintf("--if-version %s=%d", c.Key, c.Condition.Version)
	}
	return fmt.Sprintf("--if-value %s=%s", c.Key, printable(truncate(c.Condition.Value, 200)))
}
