"""Reports read from run directories: one run's summary and figure, and comparisons of many
on their task's metric. Nothing here starts or talks to a node."""
