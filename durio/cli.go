package durio

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// ErrUsage is wrapped by errors that come from a bad command line.
var ErrUsage = errors.New("usage")

const usage = `durio: a replicated key-value store.

Usage:
  durio serve [flags]              run one replica (durio serve -h for flags)
  durio dev [flags]                run a local 3-replica cluster on loopback
  durio certs --hosts H0,H1,H2     create a CA and one peer certificate per replica (mTLS)
  durio get KEY                    print a key's value
  durio put KEY VALUE              set a key
  durio append KEY VALUE           append to a key
  durio delete KEY                 delete a key
  durio status                     one line per replica
  durio bench [flags]              closed-loop load: ops/s and latency

Client commands take --endpoints URL,URL,... (default: the durio dev
cluster), --json and --timeout.
`

// clientFlags are the flags every client command takes.
type clientFlags struct {
	endpoints string
	json      bool
	timeout   time.Duration
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.endpoints, "endpoints", strings.Join(DevEndpoints, ","), "comma-separated client `URLs` of the replicas")
	fs.BoolVar(&f.json, "json", false, "print JSON instead of text")
	fs.DurationVar(&f.timeout, "timeout", 5*time.Second, "give up after this long")
}

// parseInterleaved parses flags that may appear before, between or after the
// positional arguments, and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUsage, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// RunClientCommand runs get, put, append, delete or status.
func RunClientCommand(ctx context.Context, name string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("durio "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var cf clientFlags
	cf.register(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	want := map[string]int{"get": 1, "put": 2, "append": 2, "delete": 1, "status": 0}[name]
	if len(pos) != want {
		return fmt.Errorf("%w: durio %s takes %d argument(s), got %d", ErrUsage, name, want, len(pos))
	}
	c, err := NewClient(splitList(cf.endpoints), ClientOptions{})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	ctx, cancel := context.WithTimeout(ctx, cf.timeout)
	defer cancel()
	out := func(text string, v any) error {
		if cf.json {
			return json.NewEncoder(stdout).Encode(v)
		}
		_, err := fmt.Fprintln(stdout, text)
		return err
	}
	switch name {
	case "get":
		v, err := c.Get(ctx, pos[0])
		if err != nil {
			return err
		}
		return out(v, map[string]string{"key": pos[0], "value": v})
	case "put":
		if err := c.Put(ctx, pos[0], pos[1]); err != nil {
			return err
		}
		return out("OK", map[string]bool{"ok": true})
	case "append":
		if err := c.Append(ctx, pos[0], pos[1]); err != nil {
			return err
		}
		return out("OK", map[string]bool{"ok": true})
	case "delete":
		existed, err := c.Delete(ctx, pos[0])
		if err != nil {
			return err
		}
		return out(map[bool]string{true: "deleted", false: "not found"}[existed], map[string]bool{"ok": true, "existed": existed})
	default:
		return printStatus(ctx, c, cf.json, stdout)
	}
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
}

func printStatus(ctx context.Context, c *Client, asJSON bool, w io.Writer) error {
	rows := make([]replicaStatus, len(c.Endpoints()))
	for i, ep := range c.Endpoints() {
		rows[i] = replicaStatus{Endpoint: ep}
		st, err := c.StatusOf(ctx, i)
		if err != nil {
			rows[i].Error = err.Error()
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
	}
	if asJSON {
		return json.NewEncoder(w).Encode(rows)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tID\tROLE\tTERM\tCOMMIT\tAPPLIED\tLEADER\tREACHABLE")
	for _, r := range rows {
		if !r.Reachable {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\tno (%s)\n", r.Endpoint, r.Error)
			continue
		}
		leader := "none"
		if r.Leader != nil {
			leader = fmt.Sprint(*r.Leader)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\t%s\tyes\n", r.Endpoint, r.ID, r.Role, r.Term, r.Commit, r.Applied, leader)
	}
	return tw.Flush()
}

func roleName(r kvv1.Role) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "ROLE_"))
}

// Usage is the top-level help text.
func Usage() string { return usage }
