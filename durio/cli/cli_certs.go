package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/ruaft/ruaft/durio"
)

// certsCommand is `durio certs`.
func (c *cli) certsCommand() *cobra.Command {
	var (
		opts         durio.CertsOptions
		hosts, extra string
		days         int
	)
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Create a CA and one peer certificate per replica (mutual TLS)",
		Long: `Create a certificate authority and one certificate per replica for mutual
TLS between peers: ca.crt, ca.key, replica-N.crt and replica-N.key in --dir.
Give each replica ca.crt and its own replica-N files (--peer-ca, --peer-cert,
--peer-key) and use https:// peer URLs. Keep ca.key off the replicas. If --dir
already holds a CA, it signs the new certificates, so a replica can be added
or re-keyed without touching the others.`,
		Example: "  durio certs --hosts 192.168.1.10,192.168.1.11,192.168.1.12\n" +
			"  durio certs --dir /etc/durio/certs --hosts pi1.lan,pi2.lan,pi3.lan --extra-hosts localhost,127.0.0.1",
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Hosts, opts.ExtraHosts = splitList(hosts), splitList(extra)
			opts.Validity = time.Duration(days) * 24 * time.Hour
			written, err := durio.WriteCerts(opts)
			for _, p := range written {
				fmt.Fprintln(c.stdout, "wrote", p)
			}
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&opts.Dir, "dir", "durio-certs", "`folder` to write ca.crt, ca.key, replica-N.crt and replica-N.key to")
	fs.StringVar(&hosts, "hosts", "", "comma-separated IP addresses or DNS `names`, one per replica in id order")
	fs.StringVar(&extra, "extra-hosts", "", "comma-separated `names` added to every certificate (e.g. localhost,127.0.0.1)")
	fs.IntVar(&days, "days", 3650, "validity in `days`")
	fs.BoolVar(&opts.Force, "force", false, "overwrite existing replica certificates (the CA is kept)")
	return cmd
}
