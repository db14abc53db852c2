// promql-check parses PromQL expressions, one per line on stdin, with the parser of a pinned
// Prometheus release, and prints each one that does not parse with the parser's error.
// Exit status: 0 when every expression parses, 1 otherwise. Used by tests/chart/test_chart_promql.py
// for the chart's alert rules and Grafana dashboard queries; built by hack/crds/promql-check.sh.
package main

import (
	"bufio"
	"fmt"
	"os"

	"github.com/prometheus/prometheus/promql/parser"
)

func main() {
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	bad := 0
	for scanner.Scan() {
		if _, err := parser.ParseExpr(scanner.Text()); err != nil {
			fmt.Printf("%s\n\t%v\n", scanner.Text(), err)
			bad++
		}
	}
	if err := scanner.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if bad > 0 {
		os.Exit(1)
	}
}
