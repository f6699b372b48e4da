"""Getting samples in and out: the stream contract, device drivers, file replay and recording.

Owns
    - :class:`~ingest.stream.SampleBlock`, the one type every source emits (``ingest.stream``);
    - :class:`~ingest.device.Device`, the interface every source implements (``ingest.device``);
    - hardware boards: the shared machinery (``ingest.board``: capture, decoding, gaps, reconnects
      with back-off, the packet audit), one module per board in ``ingest.boards``, pure decoders
      (``ingest.decoder``), run numbering and time stamps (``ingest.assembly``, ``ingest.clock``);
    - stream integrity (``ingest.integrity``): every numbered packet stream audited as it arrives, live
      and from raw captures, for replayed, re-sequenced or forged packets and arrival times the sample
      clock cannot explain (``Board.stream_alarms``, ``CaptureReplay.stream_alarms``, ``audit_capture``);
    - the simulator driver (``ingest.sim``), raw captures (``ingest.capture``), channel-label rules
      (``ingest.channels``), EDF/BDF I/O (``ingest.edf``), hypnogram files (``ingest.hypnograms``), the
      DREAMS text formats (``ingest.dreams``) and public dataset downloads (``ingest.datasets``, urllib).

May import
    numpy, scipy, pyserial, bleak, edfio and the standard library. Never ``dsp``, ``firmware_sim`` or
    ``dreamsync``: a driver must not depend on the emulator it is tested against (the simulator driver is
    handed its signal source by the caller) nor on the analysis that consumes its blocks.
"""
