"""Labelled data: synthetic records, SAC I/O and the window dataset."""
