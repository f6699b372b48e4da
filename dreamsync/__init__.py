"""dreamsync: sleep-EEG headbands to sleep stages, live and offline.

Owns the command line (``dreamsync.cli``) and the wiring between the layers
(``dreamsync.pipeline``): it is the only package that imports ``firmware_sim``, ``ingest`` and
``dsp`` together. Importing it is cheap: nothing numerical loads until a command needs it.

May import
    ``firmware_sim``, ``ingest``, ``dsp`` and the standard library (third-party libraries only
    through those layers or lazily inside functions).
"""

__version__ = "0.1.0"
