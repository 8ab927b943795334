// Command cambench measures camagent on loopback (issue 8) and prints one table; it writes
// bench/results.json and bench/results.png. `cambench compare OLD.json NEW.json` prints the
// ratios between two results files; `cambench table FILE` prints a file's table again.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/camagent/camagent/bench"
)

const usage = `cambench — camagent's benchmarks (docs/performance.md)

Usage:
  cambench [--quick] [--only SECTIONS] [--out FILE] [--chart FILE]
  cambench compare OLD.json NEW.json
  cambench table RESULTS.json

Sections: join, chromium-join, late, glass, chromium, fanout, peers, agent, audio, size
(default: all; chromium includes chromium-join).
Environment: BENCH_GO2RTC and BENCH_MEDIAMTX name the peers' binaries for peers (go2rtc
defaults to tools/go2rtc.sh's build; MediaMTX is not run without it).
Environment: BENCH_QUICK=1 is --quick, BENCH_ONLY=join,late is --only.

Flags:
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "table" {
		if len(args) != 2 {
			fmt.Fprintln(stderr, "usage: cambench table RESULTS.json")
			return 2
		}
		res, err := bench.ReadResults(args[1])
		if err != nil {
			fmt.Fprintln(stderr, "cambench:", err)
			return 1
		}
		res.SortFigures()
		res.PrintTable(stdout)
		return 0
	}
	if len(args) > 0 && args[0] == "compare" {
		if len(args) != 3 {
			fmt.Fprintln(stderr, "usage: cambench compare OLD.json NEW.json")
			return 2
		}
		old, err := bench.ReadResults(args[1])
		if err != nil {
			fmt.Fprintln(stderr, "cambench:", err)
			return 1
		}
		cur, err := bench.ReadResults(args[2])
		if err != nil {
			fmt.Fprintln(stderr, "cambench:", err)
			return 1
		}
		bench.Compare(stdout, old, cur)
		return 0
	}
	fs := flag.NewFlagSet("cambench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	quick := fs.Bool("quick", os.Getenv("BENCH_QUICK") != "" && os.Getenv("BENCH_QUICK") != "0", "about a minute: few samples, small fan-out")
	only := fs.String("only", os.Getenv("BENCH_ONLY"), "comma-separated sections to run")
	out := fs.String("out", "", "results file (default bench/results.json in the repository)")
	chart := fs.String("chart", "", "chart file (default bench/results.png in the repository)")
	verbose := fs.Bool("v", false, "log the hub's, agent's and pion's debug output")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	repo, err := repoRoot()
	if err != nil {
		fmt.Fprintln(stderr, "cambench:", err)
		return 2
	}
	if *out == "" {
		*out = filepath.Join(repo, "bench", "results.json")
	}
	if *chart == "" {
		*chart = filepath.Join(repo, "bench", "results.png")
	}
	var sections []string
	for _, s := range strings.Split(*only, ",") {
		if s = strings.TrimSpace(s); s != "" {
			sections = append(sections, s)
		}
	}
	for _, s := range sections {
		known := false
		for _, k := range bench.Sections {
			known = known || s == k
		}
		if !known {
			fmt.Fprintf(stderr, "cambench: unknown section %q (have %s)\n", s, strings.Join(bench.Sections, ", "))
			return 2
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, runErr := bench.Run(ctx, bench.Options{Repo: repo, Quick: *quick, Only: sections, Verbose: *verbose, Progress: stderr})
	fmt.Fprintln(stdout)
	res.PrintTable(stdout)
	if old, err := bench.ReadResults(*out); err == nil {
		res.Scale = old.Scale // make scale's figures stay
	}
	if err := res.WriteFile(*out); err != nil {
		fmt.Fprintln(stderr, "cambench:", err)
		return 1
	}
	if err := res.WriteChart(*chart); err != nil {
		fmt.Fprintln(stderr, "cambench:", err)
		return 1
	}
	fmt.Fprintf(stdout, "\nwrote %s and %s in %.0f s\n", *out, *chart, res.Seconds)
	if runErr != nil {
		fmt.Fprintln(stderr, "cambench: some measurements failed:", runErr)
		return 1
	}
	return 0
}

// repoRoot is the directory of the go.mod above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory: run cambench inside the repository")
		}
		dir = parent
	}
}
