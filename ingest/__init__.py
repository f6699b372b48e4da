"""Getting samples in and out: the stream contract, device drivers, file replay and recording.

Owns
    - :class:`~ingest.stream.SampleBlock`, the one type every source emits (``ingest.stream``);
    - :class:`~ingest.device.Device`, the interface every source implements (``ingest.device``);
    - the drivers (the simulator driver now; serial and BLE boards later), host-time
      regression (``ingest.clock``), channel-label rules (``ingest.channels``) and EDF I/O (``ingest.edf``).

May import
    numpy, scipy, pyserial, bleak, edfio and the standard library. Never ``dsp``, ``firmware_sim`` or
    ``dreamsync``: a driver must not depend on the emulator it is tested against (the simulator driver is
    handed its signal source by the caller) nor on the analysis that consumes its blocks.
"""
