"""ORM attribution: which relation, field or queryset caused a repeated statement.

The SQL layer (:mod:`.capture`) sees every repeat, so it decides *whether* something is an
N+1. This package only explains findings the SQL layer already made, in the words a Django
developer uses: ``testapp.Book.author``, where the parent queryset was evaluated, which
template line asked for it, and the ``.select_related("author")`` that fixes it. It never
creates a second finding for the same statements: :func:`attribute` fills and merges the
SQL-level findings (one root cause, one finding).

How it knows
------------
:func:`install` (called once from ``AppConfig.ready``) wraps a handful of Django methods:
the forward related descriptors' ``get_object`` (only called on a cache miss),
``QuerySet._fetch_all`` (every evaluation; ``get()`` is recognised from its frame above it
rather than wrapped, so a relation read passes through two wrappers, not three), generic
foreign keys, ``Model.refresh_from_db`` (how deferred fields load), ``Model.save_base``
and ``Model.delete``, the other ``QuerySet`` methods that run SQL (``count``, ``exists``,
``aggregate``, ``update``, ``delete``, ``create``), and the factory of generic-relation
managers. With no capture scope active each wrapper costs a ``ContextVar.get()`` and a
call. With a scope active, a call made by user code becomes an :class:`_Event` holding only
what it was called with and what it returned; calls Django makes while serving it (``get``
-> ``_fetch_all``) record nothing. The recorder's own stack walk ties each statement to its
event, with the user line and template node, so this package never walks the stack. Only
with ``REPORT_UNUSED_EAGER`` on are the related descriptors' ``__get__`` wrapped too, to
see which eager loads were used.

Everything else (which relation a queryset followed, which evaluation loaded an instance,
paths such as ``select_related("book__author")``) is worked out by :func:`attribute` after
the scope, only for the calls behind a finding. Nothing is stored on instances or
querysets, so pickling, caching libraries and models with a custom ``__eq__``/``__hash__``
are unaffected.

Where it lives
--------------
One module per idea, each importing only the ones above it in this list:

- :mod:`.relations`: tables to models, and a relation as the user names it.
- :mod:`.hooks`: the wrappers :func:`install` puts in place and the events they record:
  the only code on the per-query path.
- :mod:`.origins`: which evaluation loaded an instance, worked out after the scope.
- :mod:`.fixes`: the code to paste and where it goes.
- :mod:`.attribution`: :func:`attribute` and :func:`unused_eager`, which the analysis
  calls after a scope.
"""

from .attribution import attribute, template_lines, unused_eager
from .fixes import PEERS_ALTERNATIVE
from .hooks import install, subject, uninstall
from .origins import loaded_by, origins_of
from .relations import HAS_FETCH_MODES, model_for_table

__all__ = [
    "HAS_FETCH_MODES",
    "PEERS_ALTERNATIVE",
    "attribute",
    "install",
    "loaded_by",
    "model_for_table",
    "origins_of",
    "subject",
    "template_lines",
    "uninstall",
    "unused_eager",
]
