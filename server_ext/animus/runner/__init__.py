"""animus-runner: the data-plane agent that executes one attempt of a batch run.

Started by an executor with a run token; talks to animus-api over HTTP only (the
control plane never imports this package). See ``animus.runner.main``.
"""
