"""Benchmark of IDCS drawing: how much of the 10-digit space each filter policy leaves,
and how fast valid numbers are drawn. Run: .venv/bin/python bench/bench_idcs.py
"""

from __future__ import annotations

import random
import time

from central_api.identity.idcs import IdcsPolicy, draw, is_valid, verhoeff_digit

POLICIES = {
    "default (seq 3, rep 1, block 3, even 4)": IdcsPolicy(),
    "MOSIP strict (seq 3, rep 2, block 2, even 3)": IdcsPolicy(
        repeating_limit=2, repeating_block_limit=2, even_digits_limit=3
    ),
}


def main(samples: int = 200_000) -> None:
    rng = random.Random(42)
    pool = []
    for _ in range(samples):
        payload = str(rng.randint(2, 9)) + "".join(str(rng.randrange(10)) for _ in range(8))
        pool.append(payload + verhoeff_digit(payload))
    total = 8 * 10**8  # payloads with a leading digit 2-9; the check digit is determined
    print(f"{'policy':48s} {'accepted':>9} {'valid numbers':>15} {'draws/s':>9}")
    base = None
    for name, policy in POLICIES.items():
        accepted = sum(is_valid(n, policy) for n in pool) / samples
        t = time.perf_counter()
        drawn = 0
        while time.perf_counter() - t < 1.0:
            draw(policy, rng)
            drawn += 1
        rate = drawn / (time.perf_counter() - t)
        base = base or accepted
        print(
            f"{name:48s} {accepted:>8.1%} {accepted * total / 1e6:>13.0f} M {rate:>9.0f}"
            f"   (space {accepted / base:.2f}x of default)"
        )


if __name__ == "__main__":
    main()
