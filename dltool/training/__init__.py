"""The Keras side of a run: the session and its devices, the model, fitting, callbacks, checkpoints, the recorder,
interrupts, and the Observer whose hooks the rest of dltool implements."""
