"""Signal analysis: numba kernels, features, sleep staging, (later) adjustment detectors.

Owns
    - numba kernels (``@njit(cache=True)``, pure functions over arrays): ``dsp.spectral``
      (band powers), ``dsp.quality`` (flat, railed, missing samples), ``dsp.hmm`` (forward and
      forward-backward passes);
    - the stage vocabulary (``dsp.stages``) and the stager (``dsp.staging``), offline and live.

Functions take plain numpy arrays in microvolts, shaped (channels x samples) or (epochs x samples),
with the sample rate in Hz; they return plain arrays or small dataclasses.

May import
    numpy, scipy, numba and the standard library. Never ``ingest``, ``firmware_sim`` or
    ``dreamsync``: analysis must not care where samples came from. Importing ``dsp`` itself is cheap;
    numba is imported by the modules that hold kernels, so a CLI that only shows ``--help`` never
    loads it.
"""
