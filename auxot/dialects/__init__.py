"""One pure codec per client dialect; each maps its dialect to and from :mod:`auxot.ir`."""
