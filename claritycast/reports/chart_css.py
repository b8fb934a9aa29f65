"""pygal's stylesheet written onto the SVG's elements, so cairosvg has no CSS to parse.

pygal writes 8 KB of CSS into every SVG; cairosvg parsed it and compiled its
80 selectors for every PNG, a third of the PNG's cost. ``inline_stylesheet``
compiles each distinct stylesheet once, remembers which rules each kind of
element matched, and writes the declarations as presentation attributes.
``flatten_plain_groups`` then drops the groups that only carried a class.
"""

from __future__ import annotations

import functools
from typing import Any

import cssselect2
import tinycss2

_ROOT_ID = "chart"


Declaration = tuple[str, str, bool]  # name, value, !important


def _declarations(tokens: Any) -> list[Declaration]:
    """What cairosvg would take from a rule's or a ``style`` attribute's declarations."""
    return [
        (item.lower_name, tinycss2.serialize(item.value).strip(), item.important)
        for item in tinycss2.parse_declaration_list(
            tokens, skip_comments=True, skip_whitespace=True
        )
        if item.type == "declaration" and not item.name.startswith("-")  # no vendor properties
    ]


@functools.lru_cache(maxsize=256)
def _style_attribute(style: str) -> tuple[tuple[Declaration, ...], tuple[Declaration, ...]]:
    """A ``style`` attribute's normal and ``!important`` declarations (charts repeat a few)."""
    declarations = _declarations(style)
    return tuple(d for d in declarations if not d[2]), tuple(d for d in declarations if d[2])


Layers = tuple[tuple[Declaration, ...], ...]  # the declarations of each matching rule, in order
Key = tuple[Any, ...]
_STATIC_PSEUDO_CLASSES = {"hover", "visited", "active", "focus", "target", "root"}
_MEMO_LIMIT = 4096  # element kinds remembered per stylesheet (a chart has about 30)


def _reads_only_the_ancestry(tokens: Any, attributes: set[str]) -> bool:
    """Whether a selector looks at nothing but elements' tags, ids, classes and ancestors.

    Such a selector matches two elements alike when they and their
    ancestors agree on those (and on the presence of the attributes it
    tests, added to ``attributes``). Siblings, positions, attribute values
    and other pseudo-classes make it False. cssselect2 never matches the
    interactive pseudo-classes (``:hover``) in a document, and ``:root``
    is the element without a parent.
    """
    after_colon = False
    for token in tokens:
        if token.type == "ident":
            if after_colon and token.lower_value not in _STATIC_PSEUDO_CLASSES:
                return False
        elif token.type == "literal":
            if token.value not in {".", ",", ">", ":", "*"}:
                return False
        elif token.type == "function":
            if not after_colon or token.lower_name != "not":
                return False
            if not _reads_only_the_ancestry(token.arguments, attributes):
                return False
        elif token.type == "[] block":
            names = [item for item in token.content if item.type != "whitespace"]
            if len(names) != 1 or names[0].type != "ident":
                return False
            attributes.add(names[0].value)
        elif token.type not in {"whitespace", "comment", "hash"}:
            return False
        after_colon = token.type == "literal" and token.value == ":"
    return True


class _Stylesheet:
    """A compiled stylesheet, and which rules matched each kind of element so far.

    pygal's charts repeat a few kinds of element (27 dots, a dozen labels):
    matching the stylesheet's 80 selectors against each element was most
    of the cost of inlining it. When every selector reads only tags, ids,
    classes and ancestors, elements that agree on those (their ``key``)
    match the same rules, so each kind is matched once per process.
    """

    def __init__(self, stylesheet: str) -> None:
        self.normal, self.important = cssselect2.Matcher(), cssselect2.Matcher()
        attributes: set[str] = set()
        by_ancestry = True
        for rule in tinycss2.parse_stylesheet(stylesheet, skip_comments=True, skip_whitespace=True):
            if rule.type != "qualified-rule":
                continue
            declarations = _declarations(rule.content)
            try:
                selectors = cssselect2.compile_selector_list(rule.prelude)
            except cssselect2.SelectorError:
                continue
            by_ancestry = by_ancestry and _reads_only_the_ancestry(rule.prelude, attributes)
            for selector in selectors:
                if selector.pseudo_element is None and not selector.never_matches:
                    for matcher, forced in ((self.normal, False), (self.important, True)):
                        chosen = [d for d in declarations if d[2] is forced]
                        if chosen:
                            matcher.add_selector(selector, chosen)
        self.remembers = by_ancestry
        self.attributes = tuple(sorted(attributes))
        self.matched: dict[Key, tuple[Layers, Layers]] = {}

    def key(self, node: Any, parent: Key | None) -> Key | None:
        """What the selectors can tell ``node`` by (its parent's key included); None: no memo."""
        if not self.remembers:
            return None
        present = tuple(name in node.attrib for name in self.attributes)
        return (parent, node.tag, node.get("id"), node.get("class"), present)

    def rules(self, element: Any) -> tuple[Layers, Layers]:
        """The declarations of the normal and the ``!important`` rules ``element`` matches."""
        return (
            tuple(declarations for *_, declarations in self.normal.match(element)),
            tuple(declarations for *_, declarations in self.important.match(element)),
        )


@functools.lru_cache(maxsize=8)
def _compiled(stylesheet: str) -> _Stylesheet:
    return _Stylesheet(stylesheet)


def inline_stylesheet(root: Any) -> None:
    """Turn the SVG's ``<style>`` and ``style`` attributes into presentation attributes.

    The cascade is kept: stylesheet rules (by specificity, then order), the
    ``style`` attribute, ``!important`` rules, then ``!important`` in the
    ``style`` attribute — each overriding the one before. With no CSS left,
    the attributes say the same, and cairosvg has nothing to parse. pygal
    prefixes every selector with the chart's random id; it is set aside
    while matching, so one compiled stylesheet serves every chart. Elements
    are matched in document order, each after its ancestors got their
    attributes, as before the matches were remembered (``_Stylesheet``).
    """
    styles = [
        (parent, child)
        for parent in root.iter()
        for child in parent
        if str(child.tag).rpartition("}")[2] == "style"
    ]
    chart_id = root.get("id")
    stylesheet = "\n".join(style.text or "" for _, style in styles)
    if chart_id:
        stylesheet = stylesheet.replace(f"#{chart_id}", f"#{_ROOT_ID}")
        root.set("id", _ROOT_ID)
    sheet = _compiled(stylesheet)
    wrappers: dict[Any, cssselect2.ElementWrapper] = {}

    def visit(node: Any, parent: Key | None) -> None:
        inline, inline_important = _style_attribute(node.attrib.pop("style", ""))
        key = sheet.key(node, parent)
        found = sheet.matched.get(key) if key is not None else None
        if found is None:
            if not wrappers:  # made once, for the first element not seen before
                subtree = cssselect2.ElementWrapper.from_xml_root(root).iter_subtree()
                wrappers.update((wrapper.etree_element, wrapper) for wrapper in subtree)
            found = sheet.rules(wrappers[node])
            if key is not None and len(sheet.matched) < _MEMO_LIMIT:
                sheet.matched[key] = found
        normal, important = found
        for declarations in (*normal, inline, *important, inline_important):
            for name, value, _ in declarations:
                node.set(name, value)
        after = sheet.key(node, parent)  # what its children's selectors see of it now
        for child in node:
            if isinstance(child.tag, str):  # elements only, as cssselect2 walks them
                visit(child, after)

    visit(root, None)
    if chart_id:
        root.set("id", chart_id)
    for parent, style in styles:
        parent.remove(style)


def flatten_plain_groups(element: Any) -> None:
    """Replace every ``<g>`` that carries nothing but a class by its children.

    Once ``inline_stylesheet`` has run, such a group changes nothing drawn,
    and cairosvg spends as long on it as on a shape: pygal wraps every dot
    and bar in one (a third of a chart's elements). A group with an id may
    be referenced, so it stays.
    """
    index = 0
    while index < len(element):
        child = element[index]
        flatten_plain_groups(child)
        if str(child.tag).rpartition("}")[2] == "g" and set(child.attrib) <= {"class"}:
            element.remove(child)
            element[index:index] = list(child)
            index += len(child)
        else:
            index += 1
