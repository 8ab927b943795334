package bench

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
)

// PrintTable writes the one table: each figure next to its target and the peers' figure.
func (r *Results) PrintTable(w io.Writer) {
	fmt.Fprintf(w, "camagent bench %s — %s, %d cores (%s), %s, load average %s at start, %s at end", r.Revision, r.Date.Format("2006-01-02 15:04Z"),
		r.Machine.Cores, r.Machine.CPU, r.Machine.GoVersion, r.Machine.LoadAvg, r.Machine.LoadAvgEnd)
	if r.Quick {
		fmt.Fprint(w, " — QUICK run: few samples, not comparable")
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "section\tfigure\tvalue\ttarget\tmet\tpeers\tn\tnote")
	section := ""
	for _, f := range r.Figures {
		sec := ""
		if f.Section != section {
			sec, section = f.Section, f.Section
		}
		target, met := "", ""
		if f.Target != 0 {
			op := "≤"
			if f.Better == "higher" {
				op = "≥"
			}
			target = op + " " + num(f.Target) + " " + f.Unit
			met = "yes"
			if !f.Met() {
				met = "NO"
			}
		}
		n := ""
		if f.N > 0 {
			n = fmt.Sprint(f.N)
		}
		value := num(f.Value) + " " + f.Unit
		if f.Skipped != "" {
			value, met, n = "not measured", "", ""
			f.Note = strings.TrimPrefix(f.Note+"; "+f.Skipped, "; ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sec, f.Name, value, target, met, f.Peers, n, f.Note)
	}
	tw.Flush()
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
}

func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "n/a"
	case v == math.Trunc(v) && math.Abs(v) < 1e9:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// Compare prints, for every figure present in both files, new/old and whether that is better.
func Compare(w io.Writer, old, cur *Results) {
	fmt.Fprintf(w, "old: %s %s (%d cores, %s%s)\nnew: %s %s (%d cores, %s%s)\n",
		old.Revision, old.Date.Format("2006-01-02 15:04Z"), old.Machine.Cores, old.Machine.GoVersion, quickMark(old),
		cur.Revision, cur.Date.Format("2006-01-02 15:04Z"), cur.Machine.Cores, cur.Machine.GoVersion, quickMark(cur))
	prev := map[string]Figure{}
	for _, f := range old.Figures {
		prev[f.ID] = f
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\told\tnew\tnew/old\t")
	var missing []string
	seen := map[string]bool{}
	for _, f := range cur.Figures {
		seen[f.ID] = true
		o, ok := prev[f.ID]
		if f.Skipped != "" || (ok && o.Skipped != "") {
			fmt.Fprintf(tw, "%s\t%s\t%s\t\t\n", f.ID, skippedOr(o, ok), skippedOr(f, true))
			continue
		}
		if !ok {
			fmt.Fprintf(tw, "%s\t-\t%s %s\t\tnew figure\n", f.ID, num(f.Value), f.Unit)
			continue
		}
		ratio := f.Value / o.Value
		verdict := ""
		switch {
		case math.IsNaN(ratio) || math.IsInf(ratio, 0):
		case ratio > 1.1 && f.Better == "lower", ratio < 0.9 && f.Better == "higher":
			verdict = "worse"
		case ratio < 0.9 && f.Better == "lower", ratio > 1.1 && f.Better == "higher":
			verdict = "better"
		}
		fmt.Fprintf(tw, "%s\t%s %s\t%s %s\t%s\t%s\n", f.ID, num(o.Value), o.Unit, num(f.Value), f.Unit, num(ratio), verdict)
	}
	for id := range prev {
		if !seen[id] {
			missing = append(missing, id)
		}
	}
	tw.Flush()
	sort.Strings(missing)
	if len(missing) > 0 {
		fmt.Fprintln(w, "only in old:", strings.Join(missing, ", "))
	}
	fmt.Fprintln(w, "(±10 % is within this machine's noise; it is shared with other work)")
}

// skippedOr shows a figure's value, or that it was not measured.
func skippedOr(f Figure, ok bool) string {
	switch {
	case !ok:
		return "-"
	case f.Skipped != "":
		return "not measured"
	}
	return num(f.Value) + " " + f.Unit
}

func quickMark(r *Results) string {
	if r.Quick {
		return ", quick"
	}
	return ""
}
