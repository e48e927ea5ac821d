"""Our own command speech recogniser: a small CTC network over log-mel features, trained only on
synthetic speech that our pipeline renders (espeak-ng accents and variants, flite voices), never
on the voices the evaluation speaks with. See `train.py` for how the bundled weights were made
and `recognizer.py` for how it plugs into the command node beside pocketsphinx."""
