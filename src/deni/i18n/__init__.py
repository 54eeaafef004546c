"""English and Swahili notification texts (gettext catalogs read with Babel)."""

from deni.i18n.catalog import (
    LANGUAGES,
    NOTIFICATION_KINDS,
    format_day,
    format_kes,
    load_all,
    render_notification,
    translate,
)

__all__ = [
    "LANGUAGES",
    "NOTIFICATION_KINDS",
    "format_day",
    "format_kes",
    "load_all",
    "render_notification",
    "translate",
]
