"""The vocabulary menus are written in: screens, options, and what a screen's handler returns.

A journey is a table of `Screen`s (menus.py); the engine (engine.py) interprets it. Texts are
message ids in the gettext catalogs ("ussd.*"), formatted with the params a screen's `view`
returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deni.entrypoints.ussd.flows import Ctx

Params = Mapping[str, object]


class Kind(Enum):
    MENU = "menu"  # numbered options
    INPUT = "input"  # free entry, parsed and stored, or submitted to an action
    LIST = "list"  # paginated items from the database; picking one stores its key


@dataclass(frozen=True, slots=True)
class Goto:
    """Move to another screen (pushing this one for "0 Back"); `notice` shows above it once."""

    screen: str
    notice: str | None = None
    params: Params = field(default_factory=dict)
    reset: bool = False  # forget the back stack (after a finished action)
    push: bool = True  # False: the back stack was set already (a resumed session)


@dataclass(frozen=True, slots=True)
class Finish:
    """End the session with this text (END)."""

    text: str
    params: Params = field(default_factory=dict)


Step = Goto | Finish


class Reject(Exception):
    """The entry was wrong: show the same screen again with this short reason."""

    def __init__(self, reason: str, **params: object) -> None:
        super().__init__(reason)
        self.reason = reason
        self.params: dict[str, object] = dict(params)


View = Callable[["Ctx"], Params]
Parser = Callable[["Ctx", str], object]
Submit = Callable[["Ctx", str], Step]
Action = Callable[["Ctx"], Step]


@dataclass(frozen=True, slots=True)
class Item:
    """One row of a LIST: the params for its line, and the key stored when it is picked."""

    key: str
    params: Params


Items = Callable[["Ctx", int, int], list[Item]]  # (ctx, offset, limit) -> up to limit items


@dataclass(frozen=True, slots=True)
class Option:
    label: str  # message id
    target: str | None = None  # screen to go to, or
    action: Action | None = None  # something to do
    value: str | None = None  # stored in the screen's `field` when picked

    def __post_init__(self) -> None:
        assert (self.target is None) != (self.action is None), self.label


@dataclass(frozen=True, slots=True)
class Screen:
    id: str
    kind: Kind
    text: str  # message id of the text above the options or the prompt
    view: View | None = None  # params for `text` (and for the list lines)
    options: tuple[Option, ...] = ()
    field: str | None = None  # where an entry or an option's value is kept
    parse: Parser | None = None  # INPUT: check the entry, return the value to keep
    next: str | None = None  # INPUT: the screen after a good entry (or after a submit)
    submit: Submit | None = None  # INPUT: or act on the entry (a PIN, say) and decide
    secret: bool = False  # the entry is a PIN: never kept in the clear
    items: Items | None = None  # LIST: where the rows come from
    line: str | None = None  # LIST: message id of one row
    empty: str = "ussd.list_empty"  # LIST: shown when there are no rows
    zero_is_back: bool = True  # INPUT: "0" means back (not where 0 is a valid answer)
    resumable: bool = True  # offered again if the session drops here
    root: bool = False  # the main menu or the welcome screen

    def __post_init__(self) -> None:
        if self.kind is Kind.MENU:
            assert self.options or self.root or self.view, self.id
        if self.kind is Kind.INPUT:
            # A submit may name `next` too: where it leads when all goes well (for checks).
            assert (self.parse is not None) != (self.submit is not None), self.id
            assert self.parse is None or self.next is not None, self.id
            assert self.parse is None or self.field is not None, self.id
        if self.kind is Kind.LIST:
            assert self.items is not None, self.id
            assert self.line, self.id
            assert self.next, self.id
            assert self.field, self.id
