package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/durio"
	"github.com/ruaft/ruaft/durio/client"
	"github.com/ruaft/ruaft/kvraft/kvclient"
	"github.com/ruaft/ruaft/kvraft/kvwire"
)

// ExitRetry: a membership change refused for now — another change is in
// progress, or the learner has not caught up yet — or whose outcome is
// unknown (leadership changed while it was committing). Retry later; after
// 'member list' for an unknown outcome.
const ExitRetry = 7

// memberExitCode is ExitCode for the member commands: an unknown member
// exits 3 (like a missing key), a refusal that time will lift exits 6.
func memberExitCode(err error) (int, bool) {
	var terr twirp.Error
	if !errors.As(err, &terr) || kvwire.NoAnswer(terr) {
		return 0, false
	}
	switch {
	case terr.Code() == twirp.NotFound && terr.Meta(kvwire.MetaReason) == durio.ReasonUnknownMember:
		return ExitNotFound, true
	case terr.Code() == twirp.Aborted,
		terr.Code() == twirp.FailedPrecondition && terr.Meta(kvwire.MetaReason) == durio.ReasonLearnerBehind:
		return ExitRetry, true
	}
	return 0, false
}

func (c *cli) memberCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "member",
		Short: "List, add, promote and remove replicas",
		Long: `List the cluster's replicas and change them, one step at a time: add a
new replica as a learner (it receives the log but does not vote), promote it
to voter once it has caught up, remove a replica. Any endpoint will do; the
change is made by the leader and the command returns once it is committed.
A replica started with 'durio serve --join' adds itself and asks to be
promoted, so 'member add' and 'member promote' are for doing it by hand.

Exit codes besides the usual ones: 3 no such member, 7 refused for now
(another change in progress, or the learner is still catching up: retry) or
outcome unknown (leadership changed while the change was committing: check
with 'member list', then retry if it was not made).`,
		Example: `  durio member list
  durio member add 3 http://192.168.1.13:7000 --client-url http://192.168.1.13:8080
  durio member promote 3
  durio member remove 1`,
	}
	cmd.AddCommand(c.memberListCommand(), c.memberAddCommand(), c.memberIDCommand("promote"), c.memberIDCommand("remove"))
	return cmd
}

func (c *cli) memberListCommand() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the voters and learners, with each one's lag behind the leader",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, ctx, cancel, err := cf.client(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			members, clusterID, err := cl.MemberList(ctx)
			if err != nil {
				return cf.explain(err)
			}
			if cf.json {
				return json.NewEncoder(c.stdout).Encode(map[string]any{"cluster_id": clusterID, "members": membersJSON(members)})
			}
			return printMembers(c.stdout, members)
		},
	}
	cf.register(cmd.Flags())
	return cmd
}

func (c *cli) memberAddCommand() *cobra.Command {
	var cf clientFlags
	var clientURL string
	var level uint32
	cmd := &cobra.Command{
		Use:   "add ID PEER_URL",
		Short: "Add a replica as a learner",
		Long: `Add replica ID, whose peer listener the others reach at PEER_URL, as a
learner. Start it (durio serve --id ID --join ... --peer-url PEER_URL) with
an empty data folder; promote it once 'durio member list' shows it caught up.`,
		Example: "  durio member add 3 http://192.168.1.13:7000 --client-url http://192.168.1.13:8080",
		Args:    exactArgs("ID", "PEER_URL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseMemberID(args[0])
			if err != nil {
				return err
			}
			cl, ctx, cancel, err := cf.client(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			members, err := cl.MemberAddLevel(ctx, id, args[1], clientURL, level)
			return c.printChange(&cf, "added learner "+strconv.Itoa(id), members, err)
		},
	}
	cf.register(cmd.Flags())
	cmd.Flags().StringVar(&clientURL, "client-url", "", "`URL` clients reach the new replica at (optional)")
	cmd.Flags().Uint32Var(&level, "apply-level", kvclient.ApplyLevel,
		"the highest apply `level` the new replica's version supports (this CLI's by default); the cluster refuses one below its own")
	return cmd
}

// memberIDCommand is promote or remove: one argument, the member's id.
func (c *cli) memberIDCommand(name string) *cobra.Command {
	var cf clientFlags
	short, long, done := "Promote a learner to voter", `Promote learner ID to voter. Refused (exit 7) until it has caught up with
the leader's log; retry.`, "promoted"
	if name == "remove" {
		short, long, done = "Remove a replica", `Remove replica ID (voter or learner). Removing the leader makes it step down
once the change is committed; another replica takes over.`, "removed"
	}
	cmd := &cobra.Command{
		Use:     name + " ID",
		Short:   short,
		Long:    long,
		Example: "  durio member " + name + " 3",
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseMemberID(args[0])
			if err != nil {
				return err
			}
			cl, ctx, cancel, err := cf.client(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			var members []client.Member
			if name == "remove" {
				members, err = cl.MemberRemove(ctx, id)
			} else {
				members, err = cl.MemberPromote(ctx, id)
			}
			return c.printChange(&cf, done+" "+strconv.Itoa(id), members, err)
		},
	}
	cf.register(cmd.Flags())
	return cmd
}

func parseMemberID(s string) (int, error) {
	id, err := strconv.Atoi(s)
	if err != nil || id < 0 || id > durio.MaxReplicaID {
		return 0, fmt.Errorf("%w: ID %q must be a number from 0 to %d", durio.ErrUsage, s, durio.MaxReplicaID)
	}
	return id, nil
}

// printChange prints the outcome of a change and the members after it.
func (c *cli) printChange(cf *clientFlags, what string, members []client.Member, err error) error {
	if err != nil {
		return memberErr{cf.explain(err)}
	}
	if cf.json {
		return json.NewEncoder(c.stdout).Encode(map[string]any{"ok": true, "members": membersJSON(members)})
	}
	fmt.Fprintln(c.stdout, what)
	return printMembers(c.stdout, members)
}

// memberErr marks an error of a member command, for its exit code.
type memberErr struct{ err error }

func (e memberErr) Error() string { return e.err.Error() }
func (e memberErr) Unwrap() error { return e.err }

func membersJSON(ms []client.Member) []durio.MemberJSON {
	out := make([]durio.MemberJSON, len(ms))
	for i, m := range ms {
		out[i] = durio.MemberJSON{ID: m.ID, Role: durio.MemberRole(m.Learner), PeerURL: m.PeerURL, ClientURL: m.ClientURL,
			ProgressKnown: m.ProgressKnown, Match: m.Match, Lag: m.Lag, RecentActive: m.RecentActive,
			ApplyLevel: m.ApplyLevel}
	}
	return out
}

func printMembers(w io.Writer, ms []client.Member) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tPEER URL\tCLIENT URL\tMATCH\tLAG\tACTIVE\tLEVEL")
	for _, m := range ms {
		match, lag, active, level := "-", "-", "-", "-"
		if m.ProgressKnown {
			match, lag, active = strconv.FormatUint(m.Match, 10), strconv.FormatUint(m.Lag, 10), map[bool]string{true: "yes", false: "no"}[m.RecentActive]
			level = strconv.FormatUint(uint64(m.ApplyLevel), 10)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, durio.MemberRole(m.Learner), m.PeerURL, m.ClientURL, match, lag, active, level)
	}
	return tw.Flush()
}
