#!/usr/bin/env python3
"""A wire that delays and reorders IP packets, for tests/lesson.sh where the kernel has neither
netem nor NFQUEUE.

It opens two TUN devices, A and B, prints `ready`, and from then on copies every packet that
the system sends into one to the other, each after its own delay: DELAY ms, give or take up to
JITTER ms (uniform), and for REORDER percent of the packets GAP ms more, so that later ones
overtake them. --one-way impairs A to B only; B to A is then a plain wire. It runs until
killed. Standard library only: it must run on a fresh machine.
"""

import argparse
import fcntl
import heapq
import os
import random
import select
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--delay", type=float, default=0.0, help="ms")
    p.add_argument("--jitter", type=float, default=0.0, help="ms, uniform either side")
    p.add_argument("--reorder", type=float, default=0.0, help="percent held back")
    p.add_argument("--gap", type=float, default=5.0, help="ms a held-back packet waits more")
    p.add_argument("--one-way", action="store_true", help="impair A to B only")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    random.seed(args.seed)
    a, b = open_tun(args.a), open_tun(args.b)
    print("ready", flush=True)
    other = {a: b, b: a}
    queue = []  # (due, n, fd to write, packet)
    n = 0
    while True:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, fd, packet = heapq.heappop(queue)
            try:
                os.write(fd, packet)
            except OSError:
                pass  # the device is down, or full: the packet is lost, as on a wire
        timeout = max(0.0, queue[0][0] - now) if queue else None
        readable, _, _ = select.select([a, b], [], [], timeout)
        for fd in readable:
            for _ in range(64):
                try:
                    packet = os.read(fd, 65536)
                except BlockingIOError:
                    break
                # Each packet's delay runs from when it was read, not from the wake-up.
                now = time.monotonic()
                impaired = fd == a or not args.one_way
                delay = 0.0
                if impaired:
                    delay = args.delay + random.uniform(-args.jitter, args.jitter)
                    if random.random() * 100 < args.reorder:
                        delay += args.gap
                n += 1
                heapq.heappush(queue, (now + max(0.0, delay) / 1000, n, other[fd], packet))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
