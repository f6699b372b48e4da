"""Signal analysis: numba kernels, features, sleep staging, adjustment detectors.

Owns
    - numba kernels (``@njit(cache=True)``, pure functions over arrays): ``dsp.filters`` (IIR,
      causal with state and zero-phase), ``dsp.resample`` (polyphase), ``dsp.spectral`` (Welch,
      multitaper, band powers), ``dsp.complexity`` (Hjorth, entropies, fractal dimension),
      ``dsp.quality`` (flat, railed, missing samples, movement), ``dsp.hmm`` (forward and
      forward-backward passes), ``dsp.spectrogram`` (multitaper spectrogram for reports);
    - event detectors: ``dsp.spindles``, ``dsp.slowwaves``, ``dsp.eye_movements``;
    - the stage vocabulary (``dsp.stages``), features (``dsp.features``), the stager's parameters
      (``dsp.model``), the other channels' evidence for it (``dsp.evidence``: EMG tone, eye and
      body movement) and the stager (``dsp.staging``), offline and live; agreement and sleep
      statistics (``dsp.agreement``, ``dsp.statistics``);
    - adjustment detectors, offline and live: ``dsp.lines`` (electrical stimulation and
      entrainment: spectral lines, DC shifts), ``dsp.evoked`` (auditory: evoked-response series),
      ``dsp.tampering`` (replayed, spliced, time-warped signal), all behind ``dsp.adjustments``, on
      the input of ``dsp.detector_input`` and reporting ``dsp.events.AdjustmentEvent``.

Functions take plain numpy arrays in microvolts, shaped (channels x samples) or (epochs x samples),
with the sample rate in Hz; they return plain arrays or small dataclasses.

May import
    numpy, scipy, numba and the standard library. Never ``ingest``, ``firmware_sim`` or
    ``dreamsync``: analysis must not care where samples came from. Importing ``dsp`` itself is cheap;
    numba is imported by the modules that hold kernels, so a CLI that only shows ``--help`` never
    loads it.
"""
