package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/ruaft/ruaft/durio"
	"github.com/ruaft/ruaft/durio/backup"
	"github.com/ruaft/ruaft/kvraft"
	"github.com/ruaft/ruaft/persist"
	"github.com/spf13/cobra"
)

// maxRestoreBytes bounds the state `durio snapshot restore` loads into
// memory.
const maxRestoreBytes = 4 << 30

func (c *cli) snapshotCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Back up a cluster to a file, or seed a new cluster from one",
		Long: `Back up and restore a cluster's key-value state.

  durio snapshot save FILE        fetch a consistent snapshot from the leader
  durio snapshot inspect FILE     verify a snapshot file and print its header
  durio snapshot restore FILE --data-dir DIR [--persister badger]
                                  seed one replica's empty data folder

To move a cluster: save a snapshot, stop nothing; on the new machines run
restore into each replica's (empty) data folder with the persister it will
use, then start the replicas with durio serve as usual.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(c.snapshotSaveCommand(), c.snapshotInspectCommand(), c.snapshotRestoreCommand())
	return cmd
}

func (c *cli) snapshotSaveCommand() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "save FILE",
		Short: "Save a consistent snapshot from the leader to FILE",
		Long: `Fetch a snapshot of the whole key-value state from the leader and write it to
FILE (atomically: a temporary file, fsynced, then renamed). The snapshot holds
every write acknowledged before the command started, and records the log
index and term it covers and a SHA-256 of the state, checked on the way in
and again by restore. The cluster keeps serving meanwhile. During an election
it waits for the new leader, up to --timeout.`,
		Example: "  durio snapshot save backup-$(date +%F).durio",
		Args:    exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cf.check(); err != nil {
				return err
			}
			hc, err := cf.httpClient()
			if err != nil {
				return err
			}
			ctx, cancel := cf.context(cmd.Context())
			defer cancel()
			hdr, err := backup.Save(ctx, hc, splitList(cf.endpoints), args[0])
			if err != nil {
				return cf.explain(err)
			}
			return cf.print(c.stdout, fmt.Sprintf("saved %s: index %d, term %d, %d bytes, sha256 %s (from replica %d)",
				args[0], hdr.Index, hdr.Term, hdr.Bytes, hdr.SHA256, hdr.Replica), hdr)
		},
	}
	cf.register(cmd.Flags())
	return cmd
}

func (c *cli) snapshotInspectCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Verify a snapshot file and print what it covers",
		Args:  exactArgs("FILE"),
		RunE: func(_ *cobra.Command, args []string) error {
			hdr, data, _, err := backup.ReadFile(args[0], maxRestoreBytes)
			if err != nil {
				return err
			}
			info, err := kvraft.InspectSnapshot(data) // ReadFile decoded it: cannot fail
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(c.stdout).Encode(struct {
					backup.Header
					Keys       int    `json:"keys"`
					Revision   uint64 `json:"revision"`
					ApplyLevel uint32 `json:"apply_level"`
				}{hdr, info.Keys, info.Revision, info.ApplyLevel})
			}
			// The apply level: a cluster restored from it needs a version
			// that supports at least that (Upgrades and apply levels).
			_, err = fmt.Fprintf(c.stdout, "%s: ok\nindex:       %d\nterm:        %d\nkeys:        %d\nrevision:    %d\napply level: %d\nbytes:       %d\nsha256:      %s\ncreated:     %s by replica %d\n",
				args[0], hdr.Index, hdr.Term, info.Keys, info.Revision, info.ApplyLevel, hdr.Bytes, hdr.SHA256, hdr.Created, hdr.Replica)
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (c *cli) snapshotRestoreCommand() *cobra.Command {
	cfg := durio.DefaultConfig()
	cfg.DataDir = ""
	cmd := &cobra.Command{
		Use:   "restore FILE --data-dir DIR",
		Short: "Seed an empty replica data folder from a snapshot file",
		Long: `Verify FILE (header, checksum, that the state decodes) and write it into the
empty data folder of one replica, with the persister that replica will run.
Do this for every replica of the new cluster, then start them with durio
serve: they carry on from the snapshot's index. Refuses a folder that already
holds raft state.`,
		Example: `  for i in 0 1 2; do durio snapshot restore backup.durio --data-dir /srv/durio-$i; done`,
		Args:    exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cfg.DataDir == "" {
				return fmt.Errorf("%w: --data-dir is required", durio.ErrUsage)
			}
			if d, ok := persist.LookupDriver(cfg.Persister); ok && !d.NeedsDataDir {
				// noop, memory: the store ends with this command.
				return fmt.Errorf("%w: --persister %s keeps nothing to restore into", durio.ErrUsage, cfg.Persister)
			}
			hdr, data, keys, err := backup.ReadFile(args[0], maxRestoreBytes)
			if err != nil {
				return err
			}
			lock, err := durio.LockDataDir(cfg.DataDir)
			if errors.Is(err, durio.ErrDataDirInUse) {
				return fmt.Errorf("%w; a replica runs on it: restore only into the folder of a replica that is stopped", err)
			}
			if err != nil {
				return err
			}
			defer lock.Release()
			store, err := durio.OpenStore(cmd.Context(), cfg, slog.New(slog.DiscardHandler), durio.WithDataDirLock(lock))
			if err != nil {
				return err
			}
			err = backup.Restore(cmd.Context(), store, hdr, data)
			if cerr := store.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("durio: close the store: %w", cerr)
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.stdout, "restored %s into %s (%s): index %d, term %d, %d keys\n",
				args[0], cfg.DataDir, cfg.Persister, hdr.Index, hdr.Term, keys)
			return err
		},
	}
	cmd.Flags().StringVar(&cfg.DataDir, "data-dir", "", "the replica's data `folder` (as durio serve --data-dir)")
	cmd.Flags().StringVar(&cfg.Persister, "persister", cfg.Persister, "the store the replica will run: file, badger, or a plugin `path`")
	completeWords(cmd, "persister", "file", "badger")
	return cmd
}
