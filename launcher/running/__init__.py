"""Running a run: its node processes on a backend (local or Ray), their clocks (virtual
time's keeper, or dilated wall time and its calibration), rejoins after crashes, the live
progress, the outcome, and the summary written at its end."""
