#!/usr/bin/env python3
"""Converts Balabit Mouse Dynamics Challenge session files into Stratus pointer traces.

The data set (https://github.com/balabit/Mouse-Dynamics-Challenge; Fülöp et al., 2016) holds
mouse events of people doing ordinary administrative work over remote desktop, stamped by the
RDP client on the Windows timer (15.6 ms ticks, about 64 events a second). It carries no
licence for redistribution, so Stratus does not ship it; fetch it and convert it locally:

    git clone https://github.com/balabit/Mouse-Dynamics-Challenge
    scripts/balabit-to-trace.py Mouse-Dynamics-Challenge/training_files/user7/session_* -o /tmp/balabit
    target/release/stratus-bench predict --traces /tmp/balabit --no-families

Each session becomes one `*.trace` file (client timestamps, positions, the left button); rows
whose time goes backwards or whose position is off any screen are skipped and counted.
"""
import argparse
import os
import sys


def convert(path, out_dir, max_rows):
    samples, skipped = [], 0
    last_t, buttons = -1, 0
    with open(path, encoding="utf-8") as f:
        header = f.readline()
        if not header.startswith("record timestamp,client timestamp"):
            raise SystemExit(f"{path}: not a Balabit session file (header {header.strip()!r})")
        for line in f:
            parts = line.strip().split(",")
            if len(parts) != 6:
                skipped += 1
                continue
            try:
                t = round(float(parts[1]) * 1e6)
                x, y = float(parts[4]), float(parts[5])
            except ValueError:
                skipped += 1
                continue
            button, state = parts[2], parts[3]
            if button == "Left" and state == "Pressed":
                buttons |= 1
            elif button == "Left" and state == "Released":
                buttons &= ~1
            if t < last_t or not (0 <= x < 10000 and 0 <= y < 10000):
                skipped += 1
                continue
            last_t = t
            samples.append(f"{t} {x:g} {y:g} {buttons}")
            if len(samples) >= max_rows:
                break
    name = os.path.basename(path)
    out = os.path.join(out_dir, f"balabit-{os.path.basename(os.path.dirname(path))}-{name}.trace")
    with open(out, "w", encoding="utf-8") as f:
        f.write(f"# stratus-trace v1 rate_hz=64 source=balabit {name}, RDP client stamps\n")
        f.write("\n".join(samples) + "\n")
    return len(samples), skipped


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sessions", nargs="+")
    ap.add_argument("-o", "--out", required=True, help="directory for the *.trace files")
    ap.add_argument("--max-rows", type=int, default=200_000, help="samples per session at most")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for s in args.sessions:
        n, skipped = convert(s, args.out, args.max_rows)
        print(f"{s}: {n} samples, {skipped} rows skipped", file=sys.stderr)


if __name__ == "__main__":
    main()
