// tracestat is its own module so that the library's go.mod does not carry
// golang.org/x/exp for a benchmark analysis tool.
module github.com/ruaft/ruaft/scripts/tracestat

go 1.26.0

require golang.org/x/exp v0.0.0-20261014143641-f0251eb4aa3e
