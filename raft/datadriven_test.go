package raft

// A small data-driven test format (after cockroachdb/datadriven, which
// etcd-io/raft's interaction tests use), written here to keep the module
// free of a test-only dependency. A file holds commands and their expected
// output side by side:
//
//	# A comment line (kept as written on rewrite).
//	command arg1 key=value
//	----
//	expected output, one or more lines
//	<blank line ends the block>
//
// An empty output is written as the separator followed by a blank line.
// Output never contains blank lines (the runner refuses such output, so a
// block's end is unambiguous). With -rewrite, the runner writes each
// command's actual output back into the file in place of the expected one,
// leaving comments and commands untouched: review the diff, then commit.

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of the scripts in testdata/*.txt")

// ddCmd is one command of a script.
type ddCmd struct {
	// line is the command's line number (1-based) in its file.
	line int
	// text is the command line as written.
	text string
	name string
	// args are the positional arguments; kv the key=value ones.
	args []string
	kv   map[string]string
	want string
}

// ddChunk is a run of verbatim lines (comments, blank lines) or a command.
type ddChunk struct {
	verbatim []string
	cmd      *ddCmd
}

// parseDD parses a script; errors name the file and line.
func parseDD(path, src string) ([]ddChunk, error) {
	lines := strings.Split(strings.TrimRight(src, "\n"), "\n")
	var chunks []ddChunk
	for i := 0; i < len(lines); {
		l := lines[i]
		if t := strings.TrimSpace(l); t == "" || strings.HasPrefix(t, "#") {
			if n := len(chunks); n > 0 && chunks[n-1].cmd == nil {
				chunks[n-1].verbatim = append(chunks[n-1].verbatim, l)
			} else {
				chunks = append(chunks, ddChunk{verbatim: []string{l}})
			}
			i++
			continue
		}
		if l == "----" {
			return nil, fmt.Errorf("%s:%d: separator without a command", path, i+1)
		}
		c := &ddCmd{line: i + 1, text: strings.TrimSpace(l), kv: map[string]string{}}
		fields := strings.Fields(c.text)
		c.name = fields[0]
		for _, f := range fields[1:] {
			if k, v, ok := strings.Cut(f, "="); ok && k != "" {
				c.kv[k] = v
			} else {
				c.args = append(c.args, f)
			}
		}
		i++
		if i >= len(lines) || lines[i] != "----" {
			return nil, fmt.Errorf("%s:%d: command %q not followed by ----", path, c.line, c.text)
		}
		i++
		var want []string
		for ; i < len(lines) && lines[i] != ""; i++ {
			want = append(want, lines[i])
		}
		if i < len(lines) {
			i++ // the blank line that ends the block
		}
		c.want = strings.Join(want, "\n")
		chunks = append(chunks, ddChunk{cmd: c})
	}
	return chunks, nil
}

// runDD runs every command of the script at path through run and compares
// its output with the expected one, or, with -rewrite, writes the actual
// outputs back into the file. run returns the output, without a trailing
// newline; it reports a misuse of a command by failing the test.
func runDD(t *testing.T, path string, run func(*ddCmd) string) {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := parseDD(path, string(src))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for _, ch := range chunks {
		if ch.cmd == nil {
			for _, l := range ch.verbatim {
				out.WriteString(l + "\n")
			}
			continue
		}
		c := ch.cmd
		got := strings.TrimRight(run(c), "\n")
		if strings.Contains(got, "\n\n") || strings.HasPrefix(got, "\n") {
			t.Fatalf("%s:%d: %s: output has a blank line:\n%s", path, c.line, c.text, got)
		}
		fmt.Fprintf(&out, "%s\n----\n", c.text)
		if got != "" {
			out.WriteString(got + "\n")
		}
		out.WriteString("\n")
		if !*rewrite && got != c.want {
			t.Fatalf("%s:%d: %s\n--- want:\n%s\n--- got:\n%s\n(run go test ./raft -run TestScripts -rewrite and review the diff)",
				path, c.line, c.text, c.want, got)
		}
	}
	if *rewrite {
		res := strings.TrimRight(out.String(), "\n") + "\n"
		if res != string(src) {
			if err := os.WriteFile(path, []byte(res), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestParseDD(t *testing.T) {
	src := "# comment\n\ncmd a k=v -> b\n----\nline 1\nline 2\n\nempty\n----\n\nlast\n----\nx\n"
	chunks, err := parseDD("f", src)
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) != 4 || chunks[0].cmd != nil || len(chunks[0].verbatim) != 2 {
		t.Fatalf("chunks %+v", chunks)
	}
	c := chunks[1].cmd
	if c.name != "cmd" || strings.Join(c.args, ",") != "a,->,b" || c.kv["k"] != "v" || c.want != "line 1\nline 2" || c.line != 3 {
		t.Fatalf("command %+v", c)
	}
	if chunks[2].cmd.want != "" || chunks[3].cmd.want != "x" {
		t.Fatalf("outputs %q %q", chunks[2].cmd.want, chunks[3].cmd.want)
	}
	for _, bad := range []string{"cmd\nno separator\n", "----\nx\n", "cmd\n"} {
		if _, err := parseDD("f", bad); err == nil {
			t.Errorf("parsed %q without an error", bad)
		}
	}
}

// TestRewriteDD: -rewrite puts each command's actual output in place of the
// expected one and keeps comments and commands as written.
func TestRewriteDD(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.txt")
	src := "# keep me\necho a b\n----\nstale\nlines\n\n# and me\n\necho\n----\nx\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	echo := func(c *ddCmd) string { return strings.Join(c.args, "\n") }
	old := *rewrite
	*rewrite = true
	t.Cleanup(func() { *rewrite = old })
	runDD(t, path, echo)
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "# keep me\necho a b\n----\na\nb\n\n# and me\n\necho\n----\n"
	if string(got) != want {
		t.Fatalf("rewritten:\n%q\nwant:\n%q", got, want)
	}
	// The rewritten file passes as it stands.
	*rewrite = false
	runDD(t, path, echo)
}
