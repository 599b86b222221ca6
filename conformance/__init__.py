"""Conformance: the documents' curl examples, replayed against any deployment.

    python -m conformance --base-url URL --api-key KEY [--model M] [--only PATTERN] [--report FILE]

Cases live in ``spec/*.md`` (a heading, ``Source:``, ``Expect:`` and a fenced curl block);
``cases`` extracts them, ``curl`` parses the commands, ``client`` sends them with the
standard library, ``checks`` judges the answers.  Nothing here imports auxot: it is a
client of the deployment under test, whatever that is.
"""
