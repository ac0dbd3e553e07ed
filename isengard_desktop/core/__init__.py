"""Qt-free application core: modes, logging, characters, dataset import and curation."""
