"""Jobs: what one command does from start to end (train, score, segment, report, tabular, demo).

A job checks its options and outputs once, reads the inputs, calls the detectors and writes the
results; the CLI parses options, calls one job and prints what it returns.
"""
