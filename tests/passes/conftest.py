"""The zoo fixtures of tests/models, shared: each zoo model is exported once per session (the export
is cached for the process), whichever directory's tests ask for it first."""

from tests.models.conftest import zoo_graph, zoo_name  # noqa: F401
