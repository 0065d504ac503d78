"""A trained codec outside training: .saic files (file_codec.py), SavedModel signatures for TF
Serving (serving.py), TFLite decoders (tflite.py) and bin/export (export.py)."""
