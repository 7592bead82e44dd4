"""Content disarm and reconstruction: every accepted protocol is rebuilt, never just filtered.

``rebuild(filename, data)`` returns a NEW file, made from an allow-list, and a list (in
Swedish words, for the coordinator) of what was left out. Nothing of the host's package is
passed on as it came: a part, element, attribute, relationship or PDF key that is not on the
list below is simply never written. The deny-list checks (:mod:`safety`, :mod:`reach`,
:mod:`pdf_safety`) stay in front as a second layer that answers the host politely; members
only ever get what this module wrote.

- **.docx** -> a new package: the body (paragraphs, runs with basic formatting, tables, lists,
  section settings), styles, numbering, headers and footers, and pictures re-encoded by
  Pillow (PNG or JPEG, at most :data:`MAX_SIDE` pixels a side). Fields become the text they
  show (nested fields too: nothing inside a field's instruction survives). Never copied:
  embedded and OLE objects, altChunk, ActiveX, VML, customXml, the glossary, templates, web
  settings, comments, footnotes, tracked deletions, any relationship we did not make.
- **.odt** -> a new OpenDocument package from the same idea: text, tables, lists, styles and
  page layout, pictures re-encoded; no scripts, event listeners, forms, objects, links,
  linked sections, annotations, settings or metadata.
- **.pdf** -> a new PDF (pypdf) with only the pages: their size, content streams, and the
  fonts, images, forms, colour spaces, patterns and graphics states the content draws with,
  copied key by key from an allow-list (stream data copied as encoded, never inflated). No
  catalog entries (actions, JavaScript, forms, XFA, names, outlines, attachments, metadata),
  no annotations, no earlier revisions (incremental updates).

The output is deterministic (same input, same bytes), so a re-run after a crash files the
same version, not a new one.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections import Counter
from dataclasses import dataclass
from typing import Any

from lxml import etree

from kcg_mail.documents.inflate import inflate_entry
from kcg_mail.documents.ooxml import MinutesRejected, rejection, resolve_target, safe_parse

MAX_BYTES = 20 * 1024 * 1024  # the mail-side cap on a returned file
MAX_PART = 100 * 1024 * 1024  # one inflated zip entry
MAX_TOTAL = 200 * 1024 * 1024  # everything inflated from one package
MAX_ENTRIES = 1000
MAX_PICTURES = 200
MAX_SIDE = 2000  # pixels on the longer side of a re-encoded picture
MAX_PIXELS = 60_000_000  # refuse to decode larger pictures (decompression bombs)
MAX_PDF_PAGES = 500
PICTURE_THREADS = max(1, min(4, os.cpu_count() or 1))
MAX_PDF_OBJECTS = 200_000

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Rebuilt:
    data: bytes
    kind: str  # "docx" | "odt" | "pdf"
    removed: tuple[str, ...] = ()

    @property
    def summary_sv(self) -> str:
        return "; ".join(self.removed) if self.removed else "inget aktivt innehåll"


class _Removed:
    """What was left out, counted by kind, in Swedish words."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, what: str, n: int = 1) -> None:
        self.counts[what] += n

    def words(self) -> tuple[str, ...]:
        return tuple(f"{what} ({n})" if n > 1 else what for what, n in sorted(self.counts.items()))


def rebuild(filename: str, data: bytes, *, max_bytes: int = MAX_BYTES) -> Rebuilt:
    """Rebuild a returned protocol from its content. Raises :class:`MinutesRejected` for
    a file that is not a .docx, .odt or .pdf we can rebuild."""
    if len(data) > max_bytes:
        raise rejection("too_large", f"{len(data)} bytes (limit {max_bytes})")
    if data.startswith(b"PK\x03\x04"):
        entries = _Zip(data)
        mimetype = entries.read("mimetype")
        if mimetype is not None:
            if mimetype.strip() not in (b"application/vnd.oasis.opendocument.text",
                                        b"application/vnd.oasis.opendocument.text-template"):
                raise rejection("unsupported", f"OpenDocument of type {mimetype[:80]!r}")
            return _OdtBuilder(entries).build()
        if entries.has("[Content_Types].xml"):
            return _DocxBuilder(entries).build()
        raise rejection("unsupported", f"zip archive that is neither Word nor OpenDocument ({filename!r})")
    if b"%PDF-" in data[:1024]:
        return _rebuild_pdf(data)
    raise rejection("unsupported", f"cannot rebuild {filename!r}: neither .docx, .odt nor .pdf")


# ----------------------------------------------------------------------------- zip input


class _Zip:
    """Entries of a returned zip, inflated on demand with hard caps on the bytes produced."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        try:
            self.zf = zf = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise rejection("corrupt", f"broken zip archive: {exc}") from exc
        infos = [i for i in zf.infolist() if not i.is_dir()]
        if len(infos) > MAX_ENTRIES:
            raise rejection("zip_bomb", f"{len(infos)} zip entries (limit {MAX_ENTRIES})")
        self.infos: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            if info.flag_bits & 0x1:
                raise rejection("encrypted", f"zip entry {info.filename} is encrypted")
            self.infos.setdefault(info.filename.lower(), info)
        self.budget = MAX_TOTAL
        self.used: set[str] = set()

    def names(self) -> list[str]:
        return [i.filename for i in self.infos.values()]

    def has(self, name: str) -> bool:
        return name.lower() in self.infos

    def read(self, name: str) -> bytes | None:
        info = self.infos.get(name.lower())
        if info is None:
            return None
        self.used.add(info.filename)
        produced, blob = inflate_entry(self.zf, info, len(self.data), MAX_PART, self.budget, True)
        self.budget -= produced
        return blob

    def xml(self, name: str) -> Any | None:
        raw = self.read(name)
        return None if raw is None else safe_parse(raw, name)


def _zip_out(parts: list[tuple[str, bytes]], *, stored_first: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, blob in parts:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            stored = name == stored_first or name.lower().endswith((".png", ".jpeg", ".jpg"))
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            zf.writestr(info, blob, compresslevel=6)
    return buf.getvalue()


# ----------------------------------------------------------------------------- pictures


def reencode_picture(blob: bytes) -> tuple[bytes, str, tuple[int, int]] | None:
    """(bytes, "png"|"jpeg", pixel size) of a picture decoded and encoded again by Pillow,
    at most :data:`MAX_SIDE` pixels a side; None for what Pillow cannot read or refuses."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(blob)) as im:
            fmt = im.format
            if fmt not in ("PNG", "JPEG", "GIF", "BMP", "TIFF"):
                return None
            w, h = im.size
            if w <= 0 or h <= 0 or w * h > MAX_PIXELS:
                return None
            scale = min(1.0, MAX_SIDE / max(w, h))
            target = (max(1, int(w * scale)), max(1, int(h * scale)))
            if fmt == "JPEG":
                # decode at a reduced scale straight away (DCT scaling): fast and small
                im.draft("RGB" if im.mode not in ("L", "CMYK") else im.mode, target)
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)
            im.load()
            out_img: Image.Image = im
            if max(out_img.size) > MAX_SIDE:
                out_img = out_img.resize(target, Image.Resampling.BILINEAR, reducing_gap=2.0)
            out = io.BytesIO()
            if fmt == "JPEG":
                if out_img.mode not in ("RGB", "L"):
                    out_img = out_img.convert("RGB")
                out_img.save(out, "JPEG", quality=85)
                kind = "jpeg"
            else:
                if out_img.mode not in ("RGB", "RGBA", "L", "LA", "P", "1"):
                    out_img = out_img.convert("RGBA" if "A" in out_img.getbands() else "RGB")
                out_img.save(out, "PNG", compress_level=3)
                kind = "png"
            return out.getvalue(), kind, out_img.size
    except Exception:  # noqa: BLE001 - any picture Pillow cannot read is left out
        return None


def _reencode_many(blobs: dict[str, bytes]) -> dict[str, tuple[bytes, str, tuple[int, int]] | None]:
    """Re-encode several pictures at once: Pillow releases the GIL while it decodes and
    encodes, so a few threads use the cores a document with many photos needs."""
    if len(blobs) < 2:
        return {k: reencode_picture(v) for k, v in blobs.items()}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(PICTURE_THREADS, len(blobs))) as pool:
        return dict(zip(blobs, pool.map(reencode_picture, blobs.values())))


# ----------------------------------------------------------------------------- docx

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
R_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
CT_NS = "http://schemas.openxmlformats.org/package/2006/content-types"
WP_NS = "http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing"
A_NS = "http://schemas.openxmlformats.org/drawingml/2006/main"
PIC_NS = "http://schemas.openxmlformats.org/drawingml/2006/picture"
XML_NS = "http://www.w3.org/XML/1998/namespace"
MC_NS = "http://schemas.openxmlformats.org/markup-compatibility/2006"
_W = f"{{{W_NS}}}"
_NSMAP = {"w": W_NS, "r": R_NS}
_REL_T = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/"
_CT_W = "application/vnd.openxmlformats-officedocument.wordprocessingml."

#: w: elements copied as elements (with their allowed attributes and children).
DOCX_ELEMENTS = frozenset("""
document body hdr ftr styles numbering
p pPr r rPr t tab br cr noBreakHyphen softHyphen sym
tbl tblPr tblGrid gridCol tr trPr tc tcPr tblW tblInd tblLayout tblLook tblBorders tblCellMar tblCellSpacing
tblStyle tblStyleRowBandSize tblStyleColBandSize tblHeader trHeight cantSplit jc tcW tcBorders tcMar gridSpan
vMerge hMerge noWrap vAlign hideMark tcFitText textDirection gridBefore gridAfter wBefore wAfter
sectPr pgSz pgMar cols col docGrid headerReference footerReference titlePg pgNumType type formProt
pStyle rStyle numPr ilvl numId ind spacing keepNext keepLines pageBreakBefore widowControl contextualSpacing
outlineLvl shd pBdr top left bottom right between bar insideH insideV start end tabs suppressAutoHyphens
suppressLineNumbers mirrorIndents snapToGrid adjustRightInd autoSpaceDE autoSpaceDN bidi rtl textAlignment
b bCs i iCs u strike dstrike caps smallCaps vanish color sz szCs highlight vertAlign rFonts lang kern position
w spacing noProof emboss imprint outline shadow cs effect em fitText
docDefaults rPrDefault pPrDefault style name aliases basedOn next link uiPriority qFormat semiHidden
unhideWhenUsed hidden locked autoRedefine personal personalCompose personalReply latentStyles lsdException
tblStylePr
abstractNum nsid multiLevelType tmpl lvl start numFmt lvlText lvlJc lvlRestart isLgl suff num abstractNumId
lvlOverride startOverride styleLink numStyleLink
""".split())

#: w: elements whose children are kept in their place, the element itself is not.
DOCX_UNWRAP = frozenset("hyperlink smartTag customXml sdt sdtContent fldSimple ins moveTo dir bdo".split())

#: w: attributes copied (any element); values are plain tokens or numbers.
DOCX_ATTRS = frozenset("""
val w h type color fill themeColor themeFill themeFillShade themeFillTint themeShade themeTint sz space shadow frame
left right top bottom start end header footer gutter hanging firstLine firstLineChars leftChars rightChars
hangingChars startChars endChars before after line lineRule beforeAutospacing afterAutospacing beforeLines
afterLines ascii hAnsi eastAsia cs asciiTheme hAnsiTheme eastAsiaTheme cstheme hint orient code linePitch
charSpace equalWidth num sep styleId default customStyle ilvl tplc tentative pos leader firstRow lastRow
firstColumn lastColumn noHBand noVBand hRule fmt restart chapStyle chapSep font char semiHidden uiPriority
unhideWhenUsed qFormat locked name count defLockedState defUIPriority defSemiHidden defUnhideWhenUsed
defQFormat abstractNumId numId bidi distance
""".split())

_DOCX_ATTRS_Q = frozenset(f"{{{W_NS}}}{a}" for a in DOCX_ATTRS)
_XML_SPACE = f"{{{XML_NS}}}space"

#: What a dropped w: element is, in words.
_DOCX_DROPPED_SV = {
    "object": "inbäddat objekt (OLE)", "pict": "VML-grafik", "altChunk": "importerat innehåll (altChunk)",
    "control": "ActiveX-kontroll", "fldChar": "fält (ersatt av sin visade text)",
    "commentRangeStart": "kommentar", "commentReference": "kommentar", "del": "spårad borttagning",
    "moveFrom": "spårad borttagning", "footnoteReference": "fotnot", "endnoteReference": "slutnot",
    "subDoc": "underdokument", "embedRegular": "inbäddat typsnitt", "lvlPicBulletId": "bildpunkt i lista",
    "AlternateContent": "ritobjekt eller textruta",
}

#: Elements dropped without a word (bookkeeping that carries no content).
_DOCX_SILENT = frozenset("""
bookmarkStart bookmarkEnd proofErr lastRenderedPageBreak commentRangeEnd permStart permEnd rsid rsids
rPrChange pPrChange sectPrChange tblPrChange trPrChange tcPrChange numberingChange sdtPr sdtEndPr webHidden
instrText delInstrText delText specVanish noPunctuationKerning
""".split())

#: Run content hidden while inside a field's instruction.
_RUN_CONTENT = frozenset("t tab br cr noBreakHyphen softHyphen sym drawing".split())

_EMU_MAX = 20_000_000  # about 55 cm: larger picture extents are capped


def _split(tag: str) -> tuple[str, str]:
    """("namespace", "local name") of a Clark-notation tag or attribute name."""
    if tag[:1] == "{":
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def _local(tag: Any) -> str:
    return _split(tag)[1] if isinstance(tag, str) else ""


class _DocxBuilder:
    def __init__(self, src: _Zip) -> None:
        self.src = src
        self.removed = _Removed()
        self.media: dict[str, tuple[str, tuple[int, int]]] = {}  # source part -> (new media name, px)
        self.media_out: list[tuple[str, bytes]] = []
        self.parts_out: list[tuple[str, bytes]] = []
        self.overrides: list[tuple[str, str]] = []
        self.pictures = 0
        self.field_stack: list[str] = []
        self.prefetched: dict[str, tuple[bytes, str, tuple[int, int]] | None] = {}

    # -- package

    def _main_part(self) -> str:
        rels = self.src.xml("_rels/.rels")
        if rels is not None:
            for rel in rels.iter(f"{{{PKG_REL_NS}}}Relationship"):
                if (rel.get("TargetMode") or "").lower() == "external":
                    continue
                if (rel.get("Type") or "").strip().lower() == (_REL_T + "officeDocument").lower():
                    return resolve_target("", rel.get("Target", ""))
        return "word/document.xml"

    def _rels(self, part: str) -> dict[str, tuple[str, str]]:
        """rId -> (type, resolved internal target); external relationships are counted and left out."""
        folder, _, name = part.rpartition("/")
        root = self.src.xml(f"{folder}/_rels/{name}.rels" if folder else f"_rels/{name}.rels")
        out: dict[str, tuple[str, str]] = {}
        if root is None:
            return out
        for rel in root.iter(f"{{{PKG_REL_NS}}}Relationship"):
            if (rel.get("TargetMode") or "").strip().lower() == "external":
                self.removed.add("extern länk")
                continue
            out[rel.get("Id", "")] = ((rel.get("Type") or "").strip(), resolve_target(part, rel.get("Target", "")))
        return out

    def _rel_of_type(self, rels: dict[str, tuple[str, str]], kind: str) -> str | None:
        for rtype, target in rels.values():
            if rtype.lower() == (_REL_T + kind).lower():
                return target
        return None

    def build(self) -> Rebuilt:
        main = self._main_part()
        root = self.src.xml(main)
        if root is None or root.tag != _W + "document" or root.find(_W + "body") is None:
            raise rejection("corrupt", f"Word package without a document body ({main})")
        rels = self._rels(main)
        doc_rels: list[tuple[str, str, str]] = []  # (id, type, target relative to word/)
        self._prefetch(root, rels)

        # styles and numbering: the same allow-list
        for kind, tag, out_name in (("styles", "styles", "styles.xml"), ("numbering", "numbering", "numbering.xml")):
            target = self._rel_of_type(rels, kind)
            if target is None:
                continue
            src_root = self.src.xml(target)
            if src_root is None or src_root.tag != _W + tag:
                continue
            new = self._copy_root(src_root, {}, None)
            self._add_part(f"word/{out_name}", new, _CT_W + f"{kind}+xml")
            doc_rels.append((f"rId{len(doc_rels) + 1}", _REL_T + kind, out_name))

        # headers and footers named by the section settings
        hf_ids: dict[str, str] = {}
        hf_count = Counter[str]()
        for ref in root.iter(_W + "headerReference", _W + "footerReference"):
            rid = ref.get(f"{{{R_NS}}}id", "")
            if rid in hf_ids or rid not in rels:
                continue
            which = "header" if _local(ref.tag) == "headerReference" else "footer"
            rtype, target = rels[rid]
            if rtype.lower() != (_REL_T + which).lower():
                continue
            src_root = self.src.xml(target)
            if src_root is None or src_root.tag != _W + ("hdr" if which == "header" else "ftr"):
                continue
            hf_count[which] += 1
            out_name = f"{which}{hf_count[which]}.xml"
            part_rels: list[tuple[str, str, str]] = []
            new = self._copy_root(src_root, self._rels(target), part_rels)
            self._add_part(f"word/{out_name}", new, _CT_W + f"{which}+xml", part_rels)
            new_id = f"rId{len(doc_rels) + 1}"
            doc_rels.append((new_id, _REL_T + which, out_name))
            hf_ids[rid] = new_id

        settings = etree.Element(_W + "settings", nsmap={"w": W_NS})
        etree.SubElement(settings, _W + "defaultTabStop").set(_W + "val", "1304")
        compat = etree.SubElement(settings, _W + "compat")
        cs = etree.SubElement(compat, _W + "compatSetting")
        for k, v in (("name", "compatibilityMode"), ("uri", "http://schemas.microsoft.com/office/word"), ("val", "15")):
            cs.set(_W + k, v)
        self._add_part("word/settings.xml", settings, _CT_W + "settings+xml")
        doc_rels.append((f"rId{len(doc_rels) + 1}", _REL_T + "settings", "settings.xml"))
        body_rels: list[tuple[str, str, str]] = []
        self.field_stack = []
        new_doc = self._copy_root(root, rels, body_rels, hf_ids=hf_ids, rid_base=len(doc_rels))
        doc_rels.extend(body_rels)
        self._add_part("word/document.xml", new_doc, _CT_W + "document.main+xml", doc_rels, first=True)

        unused = {self._unused_words(name) for name in self.src.names() if name not in self.src.used}
        settings = self._rel_of_type(rels, "settings")
        raw = self.src.read(settings) if settings else None
        if raw and (b"attachedTemplate" in raw or b"mailMerge" in raw):
            unused.add("dokumentmall eller dokumentkoppling (inställningar)")
        for words in sorted(w for w in unused if w):
            self.removed.add(words)
        ct = etree.Element(f"{{{CT_NS}}}Types", nsmap={None: CT_NS})
        for ext, ctype in (("rels", "application/vnd.openxmlformats-package.relationships+xml"),
                           ("xml", "application/xml"), ("png", "image/png"), ("jpeg", "image/jpeg")):
            etree.SubElement(ct, f"{{{CT_NS}}}Default", Extension=ext, ContentType=ctype)
        for part, ctype in self.overrides:
            etree.SubElement(ct, f"{{{CT_NS}}}Override", PartName="/" + part, ContentType=ctype)
        pkg_rels = _rels_xml([("rId1", _REL_T + "officeDocument", "word/document.xml")])
        out = [("[Content_Types].xml", _xml(ct)), ("_rels/.rels", pkg_rels), *self.parts_out, *self.media_out]
        return Rebuilt(_zip_out(out), "docx", self.removed.words())

    @staticmethod
    def _unused_words(name: str) -> str:
        """What a part of the host's package that was not carried over is, in words ("" for
        parts that are rebuilt from scratch or carry nothing for a reader)."""
        low = name.lower()
        for needle, words in (("vbaproject", "makron (VBA)"), ("activex", "ActiveX-kontroller"),
                              ("embeddings/", "inbäddade filer och objekt"), ("customxml", "customXml-data"),
                              ("glossary", "dokumentdelar (glossary)"), ("comments", "kommentarer"),
                              ("websettings", "webbinställningar"), ("afchunk", "importerat innehåll (altChunk)"),
                              ("footnotes", "fotnoter"), ("endnotes", "slutnoter"), ("fonts/", "inbäddade typsnitt")):
            if needle in low:
                return words
        return ""

    def _add_part(self, name: str, root: Any, ctype: str, rels: list[tuple[str, str, str]] | None = None,
                  first: bool = False) -> None:
        entry = [(name, _xml(root))]
        if rels:
            folder, _, base = name.rpartition("/")
            entry.append((f"{folder}/_rels/{base}.rels", _rels_xml(rels)))
        if first:
            self.parts_out[0:0] = entry
        else:
            self.parts_out.extend(entry)
        self.overrides.append((name, ctype))

    # -- XML, element by element

    def _copy_root(self, src: Any, rels: dict[str, tuple[str, str]], out_rels: list[tuple[str, str, str]] | None,
                   *, hf_ids: dict[str, str] | None = None, rid_base: int = 0) -> Any:
        self.rels, self.out_rels, self.hf_ids, self.rid_base = rels, out_rels, hf_ids or {}, rid_base
        self.pic_ids: dict[str, str] = {}
        nsmap = dict(_NSMAP)
        if out_rels is not None:
            nsmap.update({"wp": WP_NS, "a": A_NS, "pic": PIC_NS})
        new = etree.Element(src.tag, nsmap=nsmap)
        self._copy_children(src, new)
        return new

    def _copy_children(self, src: Any, dst: Any) -> None:
        for child in src:
            self._copy(child, dst)

    def _copy(self, el: Any, dst: Any) -> None:
        tag = el.tag
        if not isinstance(tag, str):
            return  # comments, processing instructions
        ns, name = _split(tag)
        if ns != W_NS:
            if ns == MC_NS and name == "AlternateContent":
                self._alternate(el, dst)
            else:
                self.removed.add(f"okänt innehåll ({name})")
            return
        if name == "fldChar":
            kind = el.get(_W + "fldCharType")
            if kind == "begin":
                self.field_stack.append("instr")
                self.removed.add("fält (ersatt av sin visade text)")
            elif kind == "separate" and self.field_stack:
                self.field_stack[-1] = "result"
            elif kind == "end" and self.field_stack:
                self.field_stack.pop()
            return
        if name in _RUN_CONTENT and "instr" in self.field_stack:
            return
        if name == "fldSimple":
            self.removed.add("fält (ersatt av sin visade text)")
        if name == "drawing":
            self._drawing(el, dst)
            return
        if name in DOCX_UNWRAP:
            if name == "hyperlink":
                self.removed.add("länk (texten finns kvar)")
            self._copy_children(el, dst)
            return
        if name not in DOCX_ELEMENTS:
            if name not in _DOCX_SILENT:
                self.removed.add(_DOCX_DROPPED_SV.get(name, f"okänt Word-element ({name})"))
            return
        if name in ("headerReference", "footerReference"):
            new_id = self.hf_ids.get(el.get(f"{{{R_NS}}}id", ""))
            if new_id is None:
                return
            new = etree.SubElement(dst, tag)
            new.set(f"{{{R_NS}}}id", new_id)
            if el.get(_W + "type") in ("default", "first", "even"):
                new.set(_W + "type", el.get(_W + "type"))
            return
        new = etree.SubElement(dst, tag)
        for key, value in el.attrib.items():
            if key in _DOCX_ATTRS_Q and len(value) <= 256:
                new.set(key, value)
            elif key == _XML_SPACE and value in ("preserve", "default"):
                new.set(key, value)
        if name == "t":
            new.text = el.text
            return
        self._copy_children(el, new)

    def _alternate(self, el: Any, dst: Any) -> None:
        """Markup-compatibility wrapper: a picture inside is kept, anything else is left out."""
        for drawing in el.iter(_W + "drawing"):
            if next(drawing.iter(f"{{{A_NS}}}blip"), None) is not None and \
                    next(drawing.iter(f"{{{PIC_NS}}}pic"), None) is not None:
                self._drawing(drawing, dst)
                return
        self.removed.add(_DOCX_DROPPED_SV["AlternateContent"])

    def _drawing(self, el: Any, dst: Any) -> None:
        """A picture is rebuilt from scratch: its size and its re-encoded image, nothing else."""
        if "instr" in self.field_stack:
            return
        blip = next(el.iter(f"{{{A_NS}}}blip"), None)
        is_pic = next(el.iter(f"{{{PIC_NS}}}pic"), None) is not None
        rid = blip.get(f"{{{R_NS}}}embed") if blip is not None else None
        if blip is not None and blip.get(f"{{{R_NS}}}link"):
            self.removed.add("länkad bild")
        if not is_pic or not rid or rid not in self.rels or self.out_rels is None:
            self.removed.add("ritobjekt eller diagram")
            return
        target = self.rels[rid][1]
        media = self._media(target)
        if media is None:
            self.removed.add("bild som inte kunde läsas")
            return
        media_name, (px_w, px_h) = media
        new_rid = self.pic_ids.get(media_name)
        if new_rid is None:
            new_rid = f"rId{self.rid_base + len(self.out_rels) + 1}"
            self.pic_ids[media_name] = new_rid
            self.out_rels.append((new_rid, _REL_T + "image", f"media/{media_name}"))
        extent = next(el.iter(f"{{{WP_NS}}}extent"), None)
        cx = _int(extent.get("cx") if extent is not None else None)
        cy = _int(extent.get("cy") if extent is not None else None)
        if not cx or not cy:
            cx, cy = px_w * 9525, px_h * 9525
        if cx > _EMU_MAX or cy > _EMU_MAX:
            scale = _EMU_MAX / max(cx, cy)
            cx, cy = int(cx * scale), int(cy * scale)
        self.pictures += 1
        n = self.pictures
        run = dst if _local(dst.tag) == "r" else etree.SubElement(dst, _W + "r")
        drawing = etree.SubElement(run, _W + "drawing")
        drawing.append(etree.fromstring(_INLINE.format(cx=cx, cy=cy, n=n, rid=new_rid, name=media_name)))

    def _prefetch(self, root: Any, rels: dict[str, tuple[str, str]]) -> None:
        """Re-encode the body's pictures up front, in parallel (the copy then finds them)."""
        targets: list[str] = []
        for blip in root.iter(f"{{{A_NS}}}blip"):
            rel = rels.get(blip.get(f"{{{R_NS}}}embed") or "")
            if rel is not None and rel[1] not in targets and len(targets) < MAX_PICTURES:
                targets.append(rel[1])
        blobs = {t: b for t in targets if (b := self.src.read(t)) is not None}
        self.prefetched = _reencode_many(blobs)

    def _media(self, target: str) -> tuple[str, tuple[int, int]] | None:
        if target in self.media:
            return self.media[target]
        if len(self.media) >= MAX_PICTURES:
            return None
        if target in self.prefetched:
            done = self.prefetched.pop(target)
        else:
            blob = self.src.read(target)
            if blob is None:
                return None
            done = reencode_picture(blob)
        if done is None:
            return None
        data, ext, size = done
        name = f"image{len(self.media_out) + 1}.{ext}"
        self.media_out.append((f"word/media/{name}", data))
        self.media[target] = (name, size)
        return self.media[target]


_INLINE = (
    f'<wp:inline xmlns:wp="{WP_NS}" xmlns:a="{A_NS}" xmlns:pic="{PIC_NS}" xmlns:r="{R_NS}" '
    'distT="0" distB="0" distL="0" distR="0"><wp:extent cx="{cx}" cy="{cy}"/>'
    '<wp:docPr id="{n}" name="Bild {n}"/><wp:cNvGraphicFramePr><a:graphicFrameLocks noChangeAspect="1"/>'
    '</wp:cNvGraphicFramePr><a:graphic><a:graphicData uri="http://schemas.openxmlformats.org/drawingml/2006/picture">'
    '<pic:pic><pic:nvPicPr><pic:cNvPr id="{n}" name="{name}"/><pic:cNvPicPr/></pic:nvPicPr>'
    '<pic:blipFill><a:blip r:embed="{rid}"/><a:stretch><a:fillRect/></a:stretch></pic:blipFill>'
    '<pic:spPr><a:xfrm><a:off x="0" y="0"/><a:ext cx="{cx}" cy="{cy}"/></a:xfrm>'
    '<a:prstGeom prst="rect"><a:avLst/></a:prstGeom></pic:spPr></pic:pic></a:graphicData></a:graphic></wp:inline>'
)


def _int(value: str | None) -> int:
    if value is None or not re.fullmatch(r"\d{1,12}", value.strip()):
        return 0
    return int(value)


def _xml(root: Any) -> bytes:
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True))


def _rels_xml(rels: list[tuple[str, str, str]]) -> bytes:
    root = etree.Element(f"{{{PKG_REL_NS}}}Relationships", nsmap={None: PKG_REL_NS})
    for rid, rtype, target in rels:
        etree.SubElement(root, f"{{{PKG_REL_NS}}}Relationship", Id=rid, Type=rtype, Target=target)
    return _xml(root)


# ----------------------------------------------------------------------------- pdf

#: Dictionary keys copied from the objects a page's content draws with.
PDF_KEYS = frozenset("""
Type Subtype Length Filter DecodeParms
BaseFont FirstChar LastChar Widths FontDescriptor Encoding ToUnicode DescendantFonts CIDSystemInfo Registry
Ordering Supplement W W2 DW DW2 CIDToGIDMap FontFile FontFile2 FontFile3 Flags FontBBox ItalicAngle Ascent Descent
CapHeight StemV StemH XHeight MissingWidth Leading AvgWidth MaxWidth CharSet FontName FontFamily FontWeight
FontStretch Differences BaseEncoding FontMatrix CharProcs Length1 Length2 Length3 Lang Style Panose CIDSet
Width Height BitsPerComponent ColorSpace Decode Interpolate SMask SMaskInData Mask ImageMask Intent
BBox Matrix Resources Group FormType S CS I K
LW LC LJ ML D RI OP op OPM Font FL SM SA BM CA ca AIS TK G BC TR HT BG BG2 UCR UCR2 TR2
N Alternate Range
FunctionType Domain C0 C1 Functions Bounds Encode Size BitsPerSample Order
PatternType PaintType TilingType XStep YStep Shading ShadingType Coords Function Extend Background AntiAlias
BitsPerCoordinate BitsPerFlag VerticesPerRow
Predictor Colors Columns EarlyChange EncodedByteAlign EndOfLine EndOfBlock BlackIs1 DamagedRowsBeforeError Rows
ColorTransform
WhitePoint BlackPoint Gamma
""".split())

#: Resource dictionaries: their keys are names the content stream uses.
_PDF_RESOURCE_DICTS = frozenset("Font XObject ExtGState ColorSpace Pattern Shading Properties CharProcs".split())
_PDF_RESOURCE_KEYS = frozenset("Font XObject ExtGState ColorSpace Pattern Shading ProcSet Properties".split())
#: Stream filters copied. Not JBIG2 or JPEG 2000: the decoders with the worst record in viewers
#: (JBIG2 was the way in of FORCEDENTRY); a picture in them is left out.
_PDF_FILTERS = frozenset("""FlateDecode LZWDecode ASCII85Decode ASCIIHexDecode RunLengthDecode DCTDecode CCITTFaxDecode
Fl LZW A85 AHx RL DCT CCF""".split())
#: Names never written, even as a resource name.
_PDF_NEVER = frozenset({"JavaScript", "JS", "Launch", "SubmitForm", "ImportData", "EmbeddedFile", "EmbeddedFiles",
                        "AA", "OpenAction", "RichMedia", "XFA", "AcroForm", "GoToR", "GoToE", "URI", "Names"})


class _PdfCopier:
    def __init__(self, writer: Any) -> None:
        self.writer = writer
        self.done: dict[int, Any] = {}
        self.count = 0
        self.removed = _Removed()

    def value(self, obj: Any, depth: int = 0, parent_key: str = "") -> Any:
        from pypdf.generic import (
            ArrayObject,
            BooleanObject,
            ByteStringObject,
            DictionaryObject,
            FloatObject,
            IndirectObject,
            NameObject,
            NullObject,
            NumberObject,
            StreamObject,
            TextStringObject,
        )

        if depth > 60:
            raise rejection("corrupt", "PDF objects nested too deeply")
        self.count += 1
        if self.count > MAX_PDF_OBJECTS:
            raise rejection("zip_bomb", f"more than {MAX_PDF_OBJECTS} PDF objects on the pages")
        if isinstance(obj, IndirectObject):
            key = obj.idnum
            if key in self.done:
                return self.done[key]
            target = obj.get_object()
            if isinstance(target, StreamObject | DictionaryObject):
                ref = self.writer._add_object(NullObject())
                self.done[key] = ref
                self.writer._objects[ref.idnum - 1] = self.value(target, depth + 1, parent_key)
                return ref
            new = self.value(target, depth + 1, parent_key)
            self.done[key] = new
            return new
        if isinstance(obj, StreamObject):
            from pypdf.generic import DecodedStreamObject

            new_stream = DecodedStreamObject()
            self._dict_into(obj, new_stream, depth, parent_key)
            filters = new_stream.get("/Filter")
            names = [str(f) for f in (filters if isinstance(filters, ArrayObject) else [filters] if filters else [])]
            if any(n.lstrip("/") not in _PDF_FILTERS for n in names):
                self.removed.add("bild eller ström i ett format som inte kopieras (JBIG2, JPEG 2000)")
                return NullObject()
            new_stream._data = obj._data
            return new_stream
        if isinstance(obj, DictionaryObject):
            new = DictionaryObject()
            self._dict_into(obj, new, depth, parent_key)
            return new
        if isinstance(obj, ArrayObject):
            return ArrayObject(self.value(x, depth + 1, parent_key) for x in obj)
        if isinstance(obj, NameObject):
            return NameObject(obj) if str(obj).lstrip("/") not in _PDF_NEVER else NullObject()
        if isinstance(obj, BooleanObject | NumberObject | FloatObject | NullObject | TextStringObject | ByteStringObject):
            return obj
        return NullObject()

    def _dict_into(self, src: Any, dst: Any, depth: int, parent_key: str) -> None:
        from pypdf.generic import NameObject

        free_keys = parent_key in _PDF_RESOURCE_DICTS
        for k, v in src.items():
            name = str(k).lstrip("/")
            if name == "Length":
                continue
            if name in _PDF_NEVER:
                self.removed.add(f"PDF-{name}")
                continue
            if name == "Resources":
                dst[NameObject(k)] = self.resources(v, depth + 1)
            elif free_keys or name in PDF_KEYS:
                dst[NameObject(k)] = self.value(v, depth + 1, name)
            else:
                self.removed.add(f"PDF-nyckel /{name}")

    def resources(self, res: Any, depth: int = 0) -> Any:
        from pypdf.generic import ArrayObject, DictionaryObject, NameObject

        res = res.get_object() if res is not None else None
        new = DictionaryObject()
        if not isinstance(res, DictionaryObject):
            return new
        for k, v in res.items():
            name = str(k).lstrip("/")
            if name not in _PDF_RESOURCE_KEYS:
                self.removed.add(f"PDF-resurs /{name}")
                continue
            if name == "ProcSet":
                v = v.get_object()
                if isinstance(v, ArrayObject):
                    new[NameObject(k)] = ArrayObject(NameObject(x) for x in v if str(x).lstrip("/") in
                                                     ("PDF", "Text", "ImageB", "ImageC", "ImageI"))
                continue
            new[NameObject(k)] = self.value(v, depth + 1, name)
        return new


def _rebuild_pdf(data: bytes) -> Rebuilt:
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import ArrayObject, NameObject, NumberObject, RectangleObject, StreamObject

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise rejection("encrypted", "password-protected PDF")
        pages = list(reader.pages)
        if len(pages) > MAX_PDF_PAGES:
            raise rejection("too_large", f"{len(pages)} pages (limit {MAX_PDF_PAGES})")
        if not pages:
            raise rejection("corrupt", "PDF without pages")
        writer = PdfWriter()
        copier = _PdfCopier(writer)
        root = reader.trailer.get("/Root")
        root = root.get_object() if root is not None else {}
        for key in root:
            name = str(key).lstrip("/")
            if name not in ("Type", "Pages", "Version", "Lang", "ViewerPreferences", "PageLayout", "PageMode"):
                copier.removed.add(f"PDF-{name}")
        if data.count(b"startxref") > 1:
            copier.removed.add("tidigare versioner (inkrementella uppdateringar)")
        for page in pages:
            box = RectangleObject(page.mediabox)
            width, height = float(box.width), float(box.height)
            if not (0 < width <= 14400 and 0 < height <= 14400):
                raise rejection("corrupt", f"PDF page of {width}x{height} points")
            new = writer.add_blank_page(width, height)
            new[NameObject("/MediaBox")] = RectangleObject(box)
            if "/CropBox" in page:
                new[NameObject("/CropBox")] = RectangleObject(page.cropbox)
            rotate = page.get("/Rotate")
            if rotate is not None and int(rotate) % 90 == 0:
                new[NameObject("/Rotate")] = NumberObject(int(rotate) % 360)
            new[NameObject("/Resources")] = copier.resources(page.get("/Resources"))
            contents = page.get("/Contents")
            streams = []
            target = contents.get_object() if contents is not None else None
            for item in (target if isinstance(target, ArrayObject) else [contents] if contents is not None else []):
                if isinstance(item.get_object(), StreamObject):
                    streams.append(copier.value(item, 1, "Contents"))
            if len(streams) == 1:
                new[NameObject("/Contents")] = streams[0]
            elif streams:
                new[NameObject("/Contents")] = ArrayObject(streams)
            for key in page:
                name = str(key).lstrip("/")
                if name in ("Annots", "AA", "Metadata", "Thumb", "B", "PieceInfo", "StructParents"):
                    copier.removed.add({"Annots": "PDF-anteckningar och länkar", "AA": "PDF-AA"}.get(name, f"PDF-{name}"))
        writer._info = None
        out = io.BytesIO()
        writer.write(out)
    except MinutesRejected:
        raise
    except Exception as exc:  # noqa: BLE001 - pypdf raises many kinds on broken input
        raise rejection("corrupt", f"PDF that cannot be rebuilt: {type(exc).__name__}: {exc}") from exc
    return Rebuilt(out.getvalue(), "pdf", copier.removed.words())


# ----------------------------------------------------------------------------- odt

_ODF = {
    "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
    "style": "urn:oasis:names:tc:opendocument:xmlns:style:1.0",
    "text": "urn:oasis:names:tc:opendocument:xmlns:text:1.0",
    "table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0",
    "draw": "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0",
    "fo": "urn:oasis:names:tc:opendocument:xmlns:xsl-fo-compatible:1.0",
    "svg": "urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0",
    "xlink": "http://www.w3.org/1999/xlink",
}
_ODF_PREFIX = {v: k for k, v in _ODF.items()}
_MANIFEST_NS = "urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"

#: Elements copied, as "prefix:name" -> "content" (explicit attributes) or "style" (formatting
#: attributes of the style, fo, svg, text, table and draw vocabularies).
ODT_ELEMENTS: dict[str, str] = {
    **{f"office:{n}": "content" for n in
       "document-content document-styles automatic-styles styles master-styles font-face-decls body text".split()},
    **{f"text:{n}": "content" for n in
       "p h span s tab line-break soft-page-break list list-item list-header number".split()},
    **{f"table:{n}": "content" for n in
       """table table-column table-columns table-column-group table-header-columns table-header-rows table-row
       table-rows table-row-group table-cell covered-table-cell""".split()},
    "draw:frame": "content", "draw:text-box": "content",
    **{f"style:{n}": "style" for n in
       """style default-style paragraph-properties text-properties table-properties table-column-properties
       table-row-properties table-cell-properties graphic-properties page-layout page-layout-properties
       default-page-layout header-style footer-style header-footer-properties master-page header footer
       header-left footer-left header-first footer-first font-face tab-stops tab-stop list-level-properties
       list-level-label-alignment columns column column-sep footnote-sep drawing-page-properties""".split()},
    **{f"text:{n}": "style" for n in
       """list-style list-level-style-number list-level-style-bullet outline-style outline-level-style
       notes-configuration linenumbering-configuration""".split()},
}

#: Elements whose content stays in place without them: links, sections, fields (their shown text).
ODT_UNWRAP = frozenset(f"text:{n}" for n in """
a section meta index-body table-of-content alphabetical-index illustration-index table-index user-index
bibliography date time page-number page-count page-continuation title subject author-name author-initials chapter
file-name user-defined variable-get variable-set variable-input user-field-get user-field-input sequence sequence-ref
expression text-input drop-down dde-connection database-display database-name database-next database-row-number
execute-macro bookmark-ref reference-ref note-ref initial-creator creation-date creation-time description keywords
sender-firstname sender-lastname sender-initials sender-title sender-position sender-email sender-phone-private
sender-fax sender-company sender-phone-work sender-street sender-city sender-postal-code sender-country
sender-state-or-province printed-by print-date print-time modification-date modification-time creator
editing-cycles editing-duration word-count character-count paragraph-count page-variable-get placeholder
conditional-text template-name ruby ruby-base
""".split())

_ODT_FIELDS = frozenset(n for n in ODT_UNWRAP if n not in {"text:a", "text:section", "text:meta", "text:index-body",
                                                            "text:ruby", "text:ruby-base"})

#: Attributes of "content" elements.
ODT_CONTENT_ATTRS = frozenset("""
text:style-name text:cond-style-name text:outline-level text:c text:continue-numbering text:continue-list
text:start-value text:is-list-header text:restart-numbering text:class-names text:anchor-type text:anchor-page-number
table:name table:style-name table:number-columns-spanned table:number-rows-spanned table:number-columns-repeated
table:number-rows-repeated table:default-cell-style-name table:is-sub-table
draw:style-name draw:name draw:z-index draw:text-style-name svg:width svg:height svg:x svg:y
style:rel-width style:rel-height fo:min-height fo:min-width
office:version
""".split())

_ODT_STYLE_NS = frozenset({_ODF["style"], _ODF["fo"], _ODF["svg"], _ODF["text"], _ODF["table"], _ODF["draw"]})

_ODT_DROPPED_SV = {
    "draw:object": "inbäddat objekt", "draw:object-ole": "inbäddat objekt (OLE)", "draw:plugin": "insticksprogram",
    "draw:applet": "Java-applet", "office:scripts": "skript och makron", "office:event-listeners": "händelseskript",
    "office:forms": "formulär", "office:annotation": "kommentar", "text:tracked-changes": "spårade ändringar",
    "text:note": "fotnot", "text:section-source": "länkat avsnitt", "text:dde-connection-decls": "DDE-koppling",
    "style:background-image": "bakgrundsbild", "text:hidden-text": "dold text", "text:hidden-paragraph": "dold text",
    "svg:font-face-src": "externt typsnitt", "text:table-of-content-source": "",
}

_ODT_SILENT = frozenset("""
text:bookmark text:bookmark-start text:bookmark-end text:reference-mark text:reference-mark-start
text:reference-mark-end text:change text:change-start text:change-end text:sequence-decls text:variable-decls
text:user-field-decls text:soft-page-break-x text:alphabetical-index-mark text:alphabetical-index-mark-start
text:alphabetical-index-mark-end text:toc-mark text:toc-mark-start text:toc-mark-end svg:title svg:desc
text:index-title-template office:annotation-end
""".split())


def _qname(tag: Any) -> str:
    ns, local = _split(tag)
    return f"{_ODF_PREFIX.get(ns, ns)}:{local}"


def _append_text(dst: Any, text: str | None) -> None:
    if not text:
        return
    if len(dst):
        dst[-1].tail = (dst[-1].tail or "") + text
    else:
        dst.text = (dst.text or "") + text


class _OdtBuilder:
    def __init__(self, src: _Zip) -> None:
        self.src = src
        self.removed = _Removed()
        self.pictures: dict[str, str] = {}
        self.media_out: list[tuple[str, bytes]] = []

    def build(self) -> Rebuilt:
        content = self.src.xml("content.xml")
        if content is None or _qname(content.tag) != "office:document-content":
            raise rejection("corrupt", "OpenDocument without content.xml")
        if content.find(f"{{{_ODF['office']}}}body/{{{_ODF['office']}}}text") is None:
            raise rejection("unsupported", "OpenDocument that is not a text document")
        new_content = self._copy_root(content)
        parts: list[tuple[str, bytes]] = [("mimetype", b"application/vnd.oasis.opendocument.text"),
                                          ("content.xml", _xml(new_content))]
        styles = self.src.xml("styles.xml")
        if styles is not None and _qname(styles.tag) == "office:document-styles":
            parts.append(("styles.xml", _xml(self._copy_root(styles))))
        for name in self.src.names():
            low = name.lower()
            if low.startswith(("basic/", "scripts/")):
                self.removed.add("skript och makron")
            elif low.startswith("object") and name not in self.src.used:
                self.removed.add("inbäddat objekt")
        parts.extend(self.media_out)
        manifest = etree.Element(f"{{{_MANIFEST_NS}}}manifest", nsmap={"manifest": _MANIFEST_NS})
        manifest.set(f"{{{_MANIFEST_NS}}}version", "1.3")
        for path, mtype in [("/", "application/vnd.oasis.opendocument.text"), *(
                (n, "text/xml") for n, _ in parts[1:] if n.endswith(".xml")), *(
                (n, "image/png" if n.endswith(".png") else "image/jpeg") for n, _ in self.media_out)]:
            entry = etree.SubElement(manifest, f"{{{_MANIFEST_NS}}}file-entry")
            entry.set(f"{{{_MANIFEST_NS}}}full-path", path)
            entry.set(f"{{{_MANIFEST_NS}}}media-type", mtype)
        parts.append(("META-INF/manifest.xml", _xml(manifest)))
        return Rebuilt(_zip_out(parts, stored_first="mimetype"), "odt", self.removed.words())

    def _copy_root(self, src: Any) -> Any:
        nsmap = {k: v for k, v in _ODF.items()}
        new = etree.Element(src.tag, nsmap=nsmap)
        new.set(f"{{{_ODF['office']}}}version", "1.3")
        for child in src:
            self._copy(child, new)
        return new

    def _copy(self, el: Any, dst: Any) -> None:
        tag = el.tag
        if not isinstance(tag, str):
            _append_text(dst, el.tail)
            return
        name = _qname(tag)
        kind = ODT_ELEMENTS.get(name)
        if name == "draw:image":
            self._image(el, dst)
        elif kind is not None:
            new = etree.SubElement(dst, tag)
            for key, value in el.attrib.items():
                aname = _qname(key)
                if len(value) > 256:
                    continue
                if aname in ODT_CONTENT_ATTRS or (kind == "style" and _split(key)[0] in _ODT_STYLE_NS):
                    new.set(key, value)
            new.text = el.text
            for child in el:
                self._copy(child, new)
        elif name in ODT_UNWRAP:
            if name in _ODT_FIELDS:
                self.removed.add("fält (ersatt av sin visade text)")
            elif name == "text:a":
                self.removed.add("länk (texten finns kvar)")
            _append_text(dst, el.text)
            for child in el:
                self._copy(child, dst)
        elif name not in _ODT_SILENT and (len(el) or (el.text or "").strip() or
                                          any(_split(k)[0] not in _ODT_STYLE_NS for k in el.attrib)):
            # (an empty element with only formatting attributes, as LibreOffice writes an
            # empty office:scripts or style:background-image, is left out without a word)
            words = _ODT_DROPPED_SV.get(name, f"okänt innehåll ({name})")
            if words:
                self.removed.add(words)
        _append_text(dst, el.tail)

    def _image(self, el: Any, dst: Any) -> None:
        href = (el.get(f"{{{_ODF['xlink']}}}href") or "").strip()
        if not href or ":" in href or href.startswith(("/", "\\", "..")) or "//" in href:
            self.removed.add("länkad bild" if href else "bild utan fil")
            return
        target = href.removeprefix("./")
        new_name = self.pictures.get(target)
        if new_name is None:
            if len(self.pictures) >= MAX_PICTURES:
                self.removed.add("bild som inte kunde läsas")
                return
            blob = self.src.read(target)
            done = reencode_picture(blob) if blob is not None else None
            if done is None:
                self.removed.add("bild som inte kunde läsas")
                return
            data, ext, _size = done
            new_name = f"Pictures/image{len(self.media_out) + 1}.{'png' if ext == 'png' else 'jpg'}"
            self.media_out.append((new_name, data))
            self.pictures[target] = new_name
        img = etree.SubElement(dst, f"{{{_ODF['draw']}}}image")
        xl = _ODF["xlink"]
        for k, v in (("href", new_name), ("type", "simple"), ("show", "embed"), ("actuate", "onLoad")):
            img.set(f"{{{xl}}}{k}", v)
