"""surgsim.cases: bundled cases (the digital phantom), where they live on disk,
and building simulation-ready cases from volumes (``surgsim.cases.build``).

Import from the submodules: ``surgsim.cases.phantom`` (generator),
``surgsim.cases.default`` (the default series on disk), ``surgsim.cases.build``.
"""
