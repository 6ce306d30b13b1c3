package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ruaft/ruaft/durio"
)

// tokenCommand is `durio token`.
func (c *cli) tokenCommand() *cobra.Command {
	var role, prefix string
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Make a client token: print a line for --client-auth-file",
		Long: `Print a line for durio serve's --client-auth-file: the role, a new random token
(128 bits, from the operating system's random source) and the key prefix, if
any, the token is limited to. Append it to the file on every replica and send
them SIGHUP (systemctl reload durio); give the token to the client
(durio --token-file, the clients' token option).`,
		Example: `  durio token --role write --prefix app/ >> /etc/durio/client-tokens
  durio token --role admin`,
		Args: exactArgs(),
		RunE: func(*cobra.Command, []string) error {
			line, err := durio.NewClientTokenLine(role, prefix)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(c.stdout, line)
			return err
		},
	}
	cmd.Flags().StringVar(&role, "role", "read", "`role` of the token: read, write or admin")
	cmd.Flags().StringVar(&prefix, "prefix", "", "limit the token to keys starting with this `prefix` (read and write only)")
	return cmd
}
