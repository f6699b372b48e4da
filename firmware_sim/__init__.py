"""The emulated headband: sleep architecture, physiological signal models and (later) wire protocols.

Owns
    - hypnogram generation (``firmware_sim.hypnogram``);
    - device profiles: montage, channel kinds, sample rate (``firmware_sim.profiles``);
    - the stage-dependent signal model (``firmware_sim.signals``);
    - :class:`~firmware_sim.headband.SimulatedHeadband`, a headband that produces samples on request
      and keeps the ground truth (stages, events) of what it produced.

May import
    numpy, scipy and the standard library. Never ``ingest``, ``dsp`` or ``dreamsync``: the emulator
    stands in for hardware, so it knows nothing of the drivers that read it or the analysis that
    judges it. Stages are shared with ``dsp`` by their AASM names ("W", "N1", "N2", "N3", "REM") and
    their order, not by import.
"""
