"""Where ``ACTION="log"`` sends findings: ``EXPORTERS``, one module per destination.

:mod:`.base` holds what every exporter receives (:class:`~.base.Export`), the rate limit in
front of them all and the dispatch, which resolves each name: ``"log"``,
``"opentelemetry"``, ``"sentry"`` (the modules beside this one, each importing its optional
library only there) or the dotted path of your own callable.
"""
