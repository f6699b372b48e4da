"""Wire protocols of the emulated headbands: byte-exact device firmware as pure state machines (no I/O).

Each module turns samples from a source such as :class:`~firmware_sim.headband.SimulatedHeadband` into
the bytes a real device sends, and answers the commands a driver writes, exactly as the hardware does;
transports (:mod:`firmware_sim.serial_pty`, emulated BLE) serve them.
"""
