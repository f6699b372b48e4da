"""Errors ``dsp`` raises for signals it cannot analyse (too short, too slow a rate, wrong shape)."""


class SignalError(ValueError):
    """The signal cannot be analysed as asked; the message says why in one line."""
