"""`python -m launcher`: the hydra CLI."""

# The import stays under the guard: every forked node re-imports this module as __mp_main__,
# and must not pay for hydra and matplotlib again.
if __name__ == "__main__":
    import signal
    import time

    # A Ctrl-C while Python imports and hydra composes (about 3 s, before the run's folder is
    # known) is held, not lost: main() then ends the run at once, with its summary.
    held: list[float] = []
    signal.signal(signal.SIGINT, lambda signum, frame: held.append(time.monotonic()))
    from launcher import main as entry

    entry.HELD_INTERRUPTS = held
    entry.main()
