"""The emulated headband: sleep architecture, physiological signals, wire protocols, faults, adjustments.

Owns
    - hypnogram generation fitted to real expert hypnograms (``firmware_sim.hypnogram``; the fit:
      ``firmware_sim.hypnogram_fit``);
    - device profiles: montage, kinds, rate, amplitudes, packet size (``firmware_sim.profiles``);
    - the stage-dependent signal model with artefacts and a ground-truth event log
      (``firmware_sim.signals``) and :class:`~firmware_sim.headband.SimulatedHeadband`, which
      produces samples on request;
    - byte-exact device firmware: OpenBCI Cyton/Daisy (``firmware_sim.protocols.cyton``) served on a
      pseudo-terminal (``firmware_sim.serial_pty``); OpenBCI Ganglion and Muse
      (``firmware_sim.protocols.ganglion``, ``.muse``) served through an emulated bleak backend
      (``firmware_sim.ble``);
    - the DreamSync band (``firmware_sim.dreamsync_band``, open protocol in
      ``firmware_sim.protocols.dreamsync``): actuators whose effects come from the adjustment
      library, opt-out, a hash-chained adjustment log, and rogue firmware on demand;
    - faults on demand (``firmware_sim.faults``) and dream adjustments with their ground truth
      (``firmware_sim.adjustments``): auditory, electrical, entrainment, tampering with the signal,
      and forged packet streams (``firmware_sim.adjustments.stream``: replayed, re-sequenced or
      time-warped packets between the emulated board and the host).

May import
    numpy, scipy, the standard library, bleak (only for the emulated BLE backend it plugs into) and
    edfio (lazily, only in the offline fitting script ``hypnogram_fit``).
    Never ``ingest``, ``dsp`` or ``dreamsync``: the emulator stands in for hardware, so it knows
    nothing of the drivers that read it or the analysis that judges it. Stages are shared with
    ``dsp`` by their AASM names ("W", "N1", "N2", "N3", "REM") and their order, not by import.
"""
