"""``python -m host_training prepare ...``: outside data sets (STEAD, SeisBench folders, SAC
folders) turned into labelled windows, and ``merge`` that balances, splits and writes the card."""
