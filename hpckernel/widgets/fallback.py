"""What a front end without a Jupyter widget manager shows instead of a widget.

nbclient, papermill, a terminal console or an HTML export keep only the other entries of
the output's bundle: ipywidgets' ``repr`` there is a truncated ``VBox(children=(…``. Each
hpckernel widget replaces it with one line saying what the widget is and why it is not
shown; the live plot adds a static drawing too.
"""

from __future__ import annotations

from typing import Any

NO_WIDGETS = ("a live widget: this front end cannot show Jupyter widgets; open the "
              "notebook in JupyterLab or Jupyter Notebook")


class TextFallback:
    """Mixin for ipywidgets widgets: a one-line text/plain; ``summary`` says what it is."""

    summary = "hpckernel widget"

    def fallbacks(self) -> dict[str, object]:
        """The bundle's entries for front ends that cannot show the widget."""
        return {"text/plain": f"{self.summary} ({NO_WIDGETS})"}

    def _repr_mimebundle_(self, **kwargs: object) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)  # type: ignore[misc]
        # ipywidgets gives the data; anywidget gives (data, metadata).
        (bundle[0] if isinstance(bundle, tuple) else bundle).update(self.fallbacks())
        return bundle
