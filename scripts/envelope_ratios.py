#!/usr/bin/env python3
"""Prints the ratios of `cargo bench --bench envelope` from criterion's estimates.

Each envelope operation divided by its bare primitive on the same bytes in the same run, and
format 2 divided by format 1, per payload size, from the medians in
$CARGO_TARGET_DIR/criterion (default target/criterion).

    cargo bench --bench envelope && python3 scripts/envelope_ratios.py
"""
import json
import os
import sys

SIZES = [64, 1024, 16384, 65536]
PAIRS = [
    ("v1_open", "v1_hmac"),
    ("v2_open", "v2_mac"),
    ("v2_seal", "v2_mac"),
    ("enc_open", "aead_decrypt"),
    ("enc_seal", "aead_encrypt"),
    ("v2_open", "v1_open"),
]


def median_ns(root, size, bench):
    path = os.path.join(root, f"envelope_{size}", bench, "new", "estimates.json")
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"]


def main():
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    root = os.path.join(target, "criterion")
    header = ["size"] + [f"{a} ÷ {b}" for a, b in PAIRS]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for size in SIZES:
        try:
            cells = [f"{median_ns(root, size, a) / median_ns(root, size, b):.3f}" for a, b in PAIRS]
        except FileNotFoundError as missing:
            sys.exit(f"no estimate: {missing.filename}; run `cargo bench --bench envelope` first")
        print(f"| {size} | " + " | ".join(cells) + " |")
    print()
    print("| size | " + " | ".join(sorted({b for p in PAIRS for b in p})) + " |  (median ns)")
    for size in SIZES:
        names = sorted({b for p in PAIRS for b in p})
        print(f"| {size} | " + " | ".join(f"{median_ns(root, size, n):.0f}" for n in names) + " |")


if __name__ == "__main__":
    main()
