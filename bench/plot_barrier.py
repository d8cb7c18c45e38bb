#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Draws shm-bench's barrier rows (--filter barrier --json FILE) into one PNG.

    bench/plot_barrier.py RESULTS.json OUT.png

Four panels, ring size (segments) on the x axis, one line per debloating target (off, 10 ms,
100 ms): barrier latency p99 (p50 dashed) and records per second at the sink, for the sustained
rows (a slow sink behind a fast source) and for the bursty rows (a bursty source, a jittery sink).

Standard library only; the drawing is gnuplot's (gnuplot-nox, which scripts/bench_deps.sh installs
for shm-bench --plot already), so the plot needs no other package.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile


def series(rows, variant, target, key):
    points = sorted(
        (r["segments"], r[key])
        for r in rows
        if r.get("pattern") == "barrier"
        and r.get("variant") == variant
        and r.get("debloat_target_ms") == target
        and r.get(key) is not None
    )
    return points


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: plot_barrier.py RESULTS.json OUT.png\n")
        return 2
    with open(argv[1]) as f:
        rows = json.load(f)["results"]
    rows = [r for r in rows if r.get("pattern") == "barrier"]
    if not rows:
        sys.stderr.write("plot_barrier.py: no rows with pattern \"barrier\" in %s\n" % argv[1])
        return 1
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        sys.stderr.write("plot_barrier.py: gnuplot is not installed (scripts/bench_deps.sh installs gnuplot-nox)\n")
        return 1
    targets = sorted({r.get("debloat_target_ms") for r in rows}, key=lambda t: -1 if t is None else t)
    workdir = tempfile.mkdtemp(prefix="plot-barrier-")
    try:
        script = [
            "set terminal pngcairo size 1400,1000 font ',11'",
            "set output '%s'" % argv[2].replace("'", ""),
            "set multiplot layout 2,2 title 'shmchan barrier rows: source -> transform -> sink (%s)'"
            % ("sink %.0f ns/record" % rows[0].get("sink_ns_per_record", 0)),
            "set logscale x 2",
            "set xlabel 'ring size (segments of 32 KiB)'",
            "set key top left",
            "set grid",
        ]
        colours = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"]
        panels = [
            ("sustained", "latency", "sustained backpressure: barrier latency (ms)"),
            ("sustained", "throughput", "sustained backpressure: records/s at the sink"),
            ("bursty", "latency", "bursty source, jittery sink: barrier latency (ms)"),
            ("bursty", "throughput", "bursty source, jittery sink: records/s at the sink"),
        ]
        for variant, what, title in panels:
            plots = []
            for k, target in enumerate(targets):
                label = "debloat off" if target is None else "debloat %g ms" % target
                colour = colours[k % len(colours)]
                if what == "latency":
                    for key, dash, suffix in (("barrier_latency_ns_p99", 1, " p99"), ("barrier_latency_ns_p50", 2, " p50")):
                        points = series(rows, variant, target, key)
                        if not points:
                            continue
                        path = os.path.join(workdir, "%s-%s-%d-%s.dat" % (variant, what, k, key))
                        with open(path, "w") as f:
                            f.writelines("%d %g\n" % (s, v / 1e6) for s, v in points)
                        plots.append("'%s' using 1:2 with linespoints lw 2 dt %d lc rgb '%s' title '%s'"
                                     % (path, dash, colour, label + suffix))
                else:
                    points = series(rows, variant, target, "records_per_s")
                    if not points:
                        continue
                    path = os.path.join(workdir, "%s-%s-%d.dat" % (variant, what, k))
                    with open(path, "w") as f:
                        f.writelines("%d %g\n" % (s, v) for s, v in points)
                    plots.append("'%s' using 1:2 with linespoints lw 2 lc rgb '%s' title '%s'" % (path, colour, label))
            script.append("set title '%s'" % title)
            if what == "latency":
                script += ["set logscale y", "set ylabel 'ms'"]
            else:
                script += ["unset logscale y", "set ylabel 'records/s'", "set yrange [0:*]"]
            script.append(("plot " + ", ".join(plots)) if plots else "plot 0 notitle")
            if what != "latency":
                script.append("set autoscale y")
        script.append("unset multiplot")
        subprocess.run([gnuplot], input="\n".join(script) + "\n", text=True, check=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("wrote %s" % argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
