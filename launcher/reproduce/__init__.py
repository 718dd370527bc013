"""The DivShare paper's evaluation in one command: a suite of runs, resumable, and a report."""
