package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// buildInfo is what `durio version` reports: the module and version the
// binary was built from, the VCS revision if the build recorded one, and the
// toolchain and platform.
type buildInfo struct {
	Module    string `json:"module"`
	Version   string `json:"version"`
	Revision  string `json:"vcs_revision,omitempty"`
	Time      string `json:"vcs_time,omitempty"`
	Modified  bool   `json:"vcs_modified,omitempty"`
	GoVersion string `json:"go"`
	Platform  string `json:"platform"`
}

// readBuildInfo returns this binary's buildInfo.
func readBuildInfo() buildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return buildInfo{Module: "unknown", Version: "unknown", GoVersion: runtime.Version(),
			Platform: runtime.GOOS + "/" + runtime.GOARCH}
	}
	return buildInfoFrom(bi)
}

func buildInfoFrom(bi *debug.BuildInfo) buildInfo {
	out := buildInfo{Module: bi.Main.Path, Version: bi.Main.Version, GoVersion: bi.GoVersion}
	var goos, goarch, goarm string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			out.Revision = s.Value
		case "vcs.time":
			out.Time = s.Value
		case "vcs.modified":
			out.Modified = s.Value == "true"
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		case "GOARM":
			goarm = s.Value
		}
	}
	if out.Version == "" {
		out.Version = "(devel)"
	}
	if goos == "" {
		goos, goarch = runtime.GOOS, runtime.GOARCH
	}
	out.Platform = goos + "/" + goarch
	if goarch == "arm" && goarm != "" {
		out.Platform += "/v" + goarm
	}
	return out
}

// String is the one-line summary `durio --version` prints.
func (b buildInfo) String() string {
	s := b.Version
	if b.Revision != "" {
		rev := b.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		s += " (" + rev
		if b.Modified {
			s += ", modified"
		}
		s += ")"
	}
	return s
}

func (b buildInfo) write(w io.Writer) error {
	revision := "unknown (built without VCS information, e.g. -buildvcs=false)"
	if b.Revision != "" {
		revision = b.Revision
		if b.Time != "" {
			revision += " (" + b.Time + ")"
		}
		if b.Modified {
			revision += ", with uncommitted changes"
		}
	}
	_, err := fmt.Fprintf(w, "durio %s\nmodule:   %s\nrevision: %s\ngo:       %s\nplatform: %s\n",
		b.Version, b.Module, revision, b.GoVersion, b.Platform)
	return err
}

func shortVersion() string { return readBuildInfo().String() }

func (c *cli) versionCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, VCS revision, Go version and platform",
		Args:  exactArgs(),
		RunE: func(*cobra.Command, []string) error {
			info := readBuildInfo()
			if asJSON {
				return json.NewEncoder(c.stdout).Encode(info)
			}
			return info.write(c.stdout)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
