#!/usr/bin/env python3
"""Sequential SMTP transactions, one connection each; prints the median and
p90 time per message in milliseconds. Usage: latency.py HOST:PORT COUNT SIZE"""
import smtplib
import statistics
import sys
import time

host, port = sys.argv[1].rsplit(":", 1)
count, size = int(sys.argv[2]), int(sys.argv[3])
body = "Subject: latency\r\n\r\n" + ("x" * 76 + "\r\n") * max(1, size // 78)
times = []
for i in range(count):
    start = time.perf_counter()
    s = smtplib.SMTP(host, int(port))
    s.sendmail("s@x.test", ["rcpt@example.com"], body)
    s.quit()
    times.append((time.perf_counter() - start) * 1000)
times.sort()
print(f"{statistics.median(times):.3f} {times[int(len(times) * 0.9)]:.3f}")
