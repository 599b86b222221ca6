"""One module per public surface.  Each endpoint reads top to bottom as the
request's path: authenticate → decode → route → stream IR → encode."""
