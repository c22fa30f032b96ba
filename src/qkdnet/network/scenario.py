"""The scenario file: a QKD network described in YAML and validated by pydantic.

A scenario names the sites (coordinates, sector, whether the site is a trusted relay node, its
SAEs and its KME), the fibre links between them (length, or a route factor times the
great-circle distance; loss; wavelength; hardware preset; protocol; block size; ε parameters;
an optional attack) and network-wide defaults. Example (see ``scenarios/milan.yaml``)::

    name: example
    defaults: {route_factor: 1.45, extra_loss_db: 1.0}
    sites:
      - {id: a, name: Site A, sector: finance, lat: 45.46, lon: 9.19, trusted_node: true,
         saes: [a-app]}
      - {id: b, name: Site B, sector: health, lat: 45.51, lon: 9.19, saes: [b-app]}
    links:
      - {a: a, b: b, hardware: decoy-1550-spad}

Every error (YAML syntax, schema, cross-references) is a :class:`ScenarioError` that names the
file, the line and the field path, and says what is allowed::

    milan.yaml:57: links[3].hardware: unknown hardware preset 'foo'; choose one of: ...
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from qkdnet.network.geodesy import great_circle_km
from qkdnet.physics.hardware import PRESETS, get_preset, preset_names

Protocol = Literal["decoy-bb84", "sps-bb84", "bbm92"]
Sector = Literal[
    "administration",
    "finance",
    "health",
    "university",
    "research",
    "defence",
    "industry",
    "datacentre",
    "operator",
]
AttackKind = Literal["intercept-resend", "pns", "detector-blinding", "noise"]

#: IDs of sites, SAEs, KMEs and links: the ETSI 014 ID alphabet used across qkdnet.
ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
Ident = Annotated[str, Field(pattern=ID_PATTERN)]

#: The source kind each protocol needs (a preset's ``source.kind``).
PROTOCOL_SOURCE_KIND: dict[str, str] = {
    "decoy-bb84": "laser",
    "sps-bb84": "single-photon",
    "bbm92": "entangled-pair",
}

#: A link's fibre may not be shorter than this fraction of the straight line between its sites.
MIN_LENGTH_FRACTION = 0.95

BUILTIN_DIR = "scenarios"


class _Strict(BaseModel):
    """Unknown keys are errors (a typo must not silently fall back to a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Defaults(_Strict):
    """Network-wide values that a link or KME may override."""

    route_factor: Annotated[float, Field(ge=1.0, le=3.0)] = 1.45
    extra_loss_db: Annotated[float, Field(ge=0.0, le=30.0)] = 1.0
    block_size: Annotated[int, Field(ge=10_000)] = 10**9
    eps_sec: Annotated[float, Field(gt=0.0, lt=1.0)] = 1e-10
    eps_cor: Annotated[float, Field(gt=0.0, lt=1.0)] = 1e-15
    key_size_bits: Annotated[int, Field(ge=64, le=8192, multiple_of=8)] = 256
    pool_low_water_bits: Annotated[int, Field(ge=0)] = 4096
    qber_alarm: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.11
    kme_host: str = "127.0.0.1"
    kme_base_port: Annotated[int, Field(ge=0, le=65000)] = 8700
    store_url: str = "sqlite:///{state_dir}/{kme_id}.db"


class Kme(_Strict):
    """A site's Key Management Entity: its ID, HTTPS port (0 = any free port) and key store."""

    id: Ident | None = None
    port: Annotated[int, Field(ge=0, le=65535)] | None = None
    store_url: str | None = None


class Site(_Strict):
    """A site of the network: a building with a KME and the SAEs (applications) it serves."""

    id: Ident
    name: str
    sector: Sector
    lat: Annotated[float, Field(ge=-90.0, le=90.0)]
    lon: Annotated[float, Field(ge=-180.0, le=180.0)]
    trusted_node: bool = False
    press_named: bool = False
    note: str = ""
    saes: Annotated[list[Ident], Field(min_length=1)]
    kme: Kme = Kme()


class Attack(_Strict):
    """An eavesdropper switched on part-way through a run (the link should abort and say why)."""

    kind: AttackKind
    start_s: Annotated[float, Field(ge=0.0)] = 0.0
    fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0


class Link(_Strict):
    """A fibre link between two sites and the QKD system running over it."""

    id: Ident | None = None
    a: Ident
    b: Ident
    length_km: Annotated[float, Field(gt=0.0, le=500.0)] | None = None
    route_factor: Annotated[float, Field(ge=1.0, le=3.0)] | None = None
    attenuation_db_per_km: Annotated[float, Field(ge=0.0, le=10.0)] | None = None
    extra_loss_db: Annotated[float, Field(ge=0.0, le=30.0)] | None = None
    wavelength_nm: Annotated[float, Field(gt=300.0, lt=2000.0)] | None = None
    hardware: str
    protocol: Protocol | None = None
    block_size: Annotated[int, Field(ge=10_000)] | None = None
    eps_sec: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None
    eps_cor: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None
    entangled_source: Literal["a", "middle"] = "a"
    attack: Attack | None = None
    note: str = ""

    @field_validator("hardware")
    @classmethod
    def _known_preset(cls, value: str) -> str:
        if value not in PRESETS:
            raise ValueError(
                f"unknown hardware preset {value!r}; choose one of: {', '.join(preset_names())}"
            )
        return value


class ScenarioModel(_Strict):
    """The whole file as written (before defaults are applied and cross-references checked)."""

    name: Ident
    description: str = ""
    defaults: Defaults = Defaults()
    sites: Annotated[list[Site], Field(min_length=2)]
    links: Annotated[list[Link], Field(min_length=1)]


@dataclass(frozen=True)
class SiteSpec:
    """A site with its KME settings resolved (ID, host, port, store URL template)."""

    id: str
    name: str
    sector: str
    lat: float
    lon: float
    trusted_node: bool
    press_named: bool
    saes: tuple[str, ...]
    kme_id: str
    kme_host: str
    kme_port: int
    store_url: str
    note: str = ""

    def store_url_for(self, state_dir: Path | str) -> str:
        """The store URL with ``{state_dir}`` and ``{kme_id}`` filled in."""
        return self.store_url.format(state_dir=Path(state_dir).as_posix(), kme_id=self.kme_id)


@dataclass(frozen=True)
class LinkSpec:
    """A link with every default applied: what the planner and the runtime use."""

    id: str
    a: str
    b: str
    length_km: float
    straight_km: float
    attenuation_db_per_km: float
    extra_loss_db: float
    wavelength_nm: float
    hardware: str
    protocol: str
    block_size: int
    eps_sec: float
    eps_cor: float
    entangled_source: str = "a"
    attack: Attack | None = None
    note: str = ""

    @property
    def loss_db(self) -> float:
        """Total channel loss: fibre attenuation times length plus patch/splice loss."""
        return self.length_km * self.attenuation_db_per_km + self.extra_loss_db

    def other(self, site: str) -> str:
        """The site at the other end of the link from ``site``."""
        if site == self.a:
            return self.b
        if site == self.b:
            return self.a
        raise ValueError(f"site {site!r} is not an end of link {self.id!r}")


@dataclass(frozen=True)
class Scenario:
    """A validated scenario: sites and links with defaults applied, plus where it came from."""

    name: str
    description: str
    defaults: Defaults
    sites: tuple[SiteSpec, ...]
    links: tuple[LinkSpec, ...]
    source: str

    def site(self, site_id: str) -> SiteSpec:
        """The site called ``site_id`` (KeyError listing the known ones otherwise)."""
        for s in self.sites:
            if s.id == site_id:
                return s
        raise KeyError(f"unknown site {site_id!r}; sites: {', '.join(s.id for s in self.sites)}")

    def link(self, link_id: str) -> LinkSpec:
        """The link called ``link_id``."""
        for link in self.links:
            if link.id == link_id:
                return link
        raise KeyError(f"unknown link {link_id!r}; links: {', '.join(x.id for x in self.links)}")

    def site_of_sae(self, sae_id: str) -> SiteSpec:
        """The site whose KME serves SAE ``sae_id``."""
        for s in self.sites:
            if sae_id in s.saes:
                return s
        raise KeyError(f"no site serves SAE {sae_id!r}")


class ScenarioError(ValueError):
    """A scenario file is invalid: names the file, the line, the field path and what is allowed."""

    def __init__(self, file: str, line: int | None, path: str, message: str) -> None:
        self.file = file
        self.line = line
        self.path = path
        self.message = message
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {path}: {message}" if path else f"{where}: {message}")


# --------------------------------------------------------------------------------------------
# Loading


def builtin_scenarios() -> list[str]:
    """Names of the scenarios shipped with qkdnet (``milan`` is the default)."""
    folder = resources.files("qkdnet.network").joinpath(BUILTIN_DIR)
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def resolve_scenario_path(name_or_path: str | Path | None) -> Path:
    """A built-in scenario name (``milan``) or a path to a YAML file; ``None`` means Milan."""
    if name_or_path is None:
        name_or_path = "milan"
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        if not candidate.is_file():
            raise ScenarioError(str(candidate), None, "", "no such file")
        return candidate
    if str(name_or_path) in builtin_scenarios():
        folder = resources.files("qkdnet.network").joinpath(BUILTIN_DIR)
        return Path(str(folder.joinpath(f"{name_or_path}.yaml")))
    raise ScenarioError(
        str(name_or_path),
        None,
        "",
        f"not a file and not a built-in scenario; built-in: {', '.join(builtin_scenarios())}",
    )


def load_scenario(name_or_path: str | Path | None = None) -> Scenario:
    """Load and validate a scenario file (or a built-in one by name; default: Milan)."""
    path = resolve_scenario_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(str(path), None, "", f"cannot read: {exc}") from None
    return parse_scenario(text, source=str(path))


#: LibYAML's parser where PyYAML was built with it (~10x faster on large generated networks).
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose_and_load(text: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (for line numbers in errors) and the data, from one parse."""
    loader = _YAML_LOADER(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()
    return root, data


def parse_scenario(text: str, source: str = "<string>") -> Scenario:
    """Validate scenario YAML ``text``; ``source`` names it in error messages."""
    try:
        root, data = _compose_and_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ScenarioError(source, line, "", f"YAML syntax: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(source, None, "", f"YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ScenarioError(source, 1, "", "the file must be a mapping with name, sites, links")
    try:
        model = ScenarioModel.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = tuple(err["loc"])
        raise ScenarioError(
            source, _line_of(root, loc), _path_text(loc), _message(err, loc)
        ) from None
    return _resolve(model, root, source)


def _path_text(loc: Sequence[Any]) -> str:
    """``('links', 3, 'hardware')`` → ``links[3].hardware``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_of(root: yaml.Node | None, loc: Sequence[Any]) -> int | None:
    """1-based line of the YAML node at ``loc`` (or of the deepest ancestor that exists)."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        nxt: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    nxt = value
                    line = key.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            nxt = node.value[part]
            line = nxt.start_mark.line + 1
        if nxt is None:
            break
        node = nxt
    return line


def _message(err: dict[str, Any], loc: Sequence[Any]) -> str:
    """pydantic's message, made to say what is allowed where pydantic does not."""
    kind = err["type"]
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        allowed = ", ".join(model.model_fields) if model else "?"
        return f"unknown field {loc[-1]!r}; allowed fields: {allowed}"
    if kind == "missing":
        return "required field is missing"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg.removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        msg = "IDs are 1-64 characters from A-Z a-z 0-9 _ . -"
    got = err.get("input")
    if kind not in ("missing",) and not isinstance(got, (dict, list)):
        msg += f" (got {got!r})"
    return msg


def _model_at(loc: Sequence[Any]) -> type[BaseModel] | None:
    """The pydantic model class that validates the mapping at ``loc``."""
    model: type[BaseModel] = ScenarioModel
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        sub = _model_in_annotation(field.annotation)
        if sub is None:
            return None
        model = sub
    return model


def _model_in_annotation(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in_annotation(arg)
        if found is not None:
            return found
    return None


def _resolve(model: ScenarioModel, root: yaml.Node, source: str) -> Scenario:
    """Apply defaults and check cross-references (unique IDs, known sites, compatible devices)."""

    def fail(loc: tuple[Any, ...], message: str) -> ScenarioError:
        return ScenarioError(source, _line_of(root, loc), _path_text(loc), message)

    d = model.defaults
    sites: list[SiteSpec] = []
    seen_sites: dict[str, int] = {}
    seen_saes: dict[str, str] = {}
    seen_kmes: dict[str, str] = {}
    seen_ports: dict[int, str] = {}
    for i, s in enumerate(model.sites):
        if s.id in seen_sites:
            raise fail(
                ("sites", i, "id"), f"duplicate site id {s.id!r} (also sites[{seen_sites[s.id]}])"
            )
        seen_sites[s.id] = i
        for j, sae in enumerate(s.saes):
            if sae in seen_saes:
                raise fail(
                    ("sites", i, "saes", j),
                    f"SAE id {sae!r} is already used at site {seen_saes[sae]!r}; SAE ids are unique",
                )
            seen_saes[sae] = s.id
        kme_id = s.kme.id or f"kme-{s.id}"
        if kme_id in seen_kmes or kme_id in seen_saes:
            raise fail(("sites", i, "kme", "id"), f"KME id {kme_id!r} is not unique")
        seen_kmes[kme_id] = s.id
        port = (
            s.kme.port
            if s.kme.port is not None
            else (d.kme_base_port + i if d.kme_base_port else 0)
        )
        if port > 65535:
            raise fail(("sites", i, "kme", "port"), f"port {port} above 65535; lower kme_base_port")
        if port and port in seen_ports:
            raise fail(
                ("sites", i, "kme", "port"),
                f"port {port} is already used by the KME of {seen_ports[port]!r}",
            )
        if port:
            seen_ports[port] = s.id
        store_url = s.kme.store_url or d.store_url
        try:
            store_url.format(state_dir="x", kme_id="y")
        except (KeyError, IndexError, ValueError) as exc:
            raise fail(
                ("sites", i, "kme", "store_url"),
                f"bad placeholder {exc}; only {{state_dir}} and {{kme_id}} are allowed",
            ) from None
        sites.append(
            SiteSpec(
                id=s.id,
                name=s.name,
                sector=s.sector,
                lat=s.lat,
                lon=s.lon,
                trusted_node=s.trusted_node,
                press_named=s.press_named,
                saes=tuple(s.saes),
                kme_id=kme_id,
                kme_host=d.kme_host,
                kme_port=port,
                store_url=store_url,
                note=s.note,
            )
        )
    by_id = {s.id: s for s in sites}
    links: list[LinkSpec] = []
    seen_links: dict[str, int] = {}
    seen_pairs: dict[frozenset[str], int] = {}
    for i, link in enumerate(model.links):
        for end in ("a", "b"):
            if getattr(link, end) not in by_id:
                raise fail(
                    ("links", i, end),
                    f"unknown site {getattr(link, end)!r}; sites: {', '.join(by_id)}",
                )
        if link.a == link.b:
            raise fail(("links", i, "b"), f"a link joins two different sites (both are {link.a!r})")
        pair = frozenset((link.a, link.b))
        if pair in seen_pairs:
            raise fail(
                ("links", i, "b"),
                f"sites {link.a!r} and {link.b!r} are already linked by links[{seen_pairs[pair]}]",
            )
        seen_pairs[pair] = i
        link_id = link.id or f"{link.a}--{link.b}"
        if link_id in seen_links:
            raise fail(("links", i, "id"), f"duplicate link id {link_id!r}")
        seen_links[link_id] = i
        sa, sb = by_id[link.a], by_id[link.b]
        straight = great_circle_km(sa.lat, sa.lon, sb.lat, sb.lon)
        if link.length_km is not None and link.route_factor is not None:
            raise fail(("links", i, "route_factor"), "give length_km or route_factor, not both")
        if link.length_km is not None:
            length = link.length_km
            if length < MIN_LENGTH_FRACTION * straight:
                raise fail(
                    ("links", i, "length_km"),
                    f"{length} km is shorter than the straight line between the sites "
                    f"({straight:.2f} km); a fibre cannot be",
                )
        else:
            length = straight * (link.route_factor or d.route_factor)
        preset = get_preset(link.hardware)
        protocol = link.protocol or preset.protocol
        need = PROTOCOL_SOURCE_KIND[protocol]
        if preset.source.kind != need:
            compatible = [n for n in preset_names() if PRESETS[n].source.kind == need]
            raise fail(
                ("links", i, "protocol"),
                f"{protocol} needs a {need} source but preset {link.hardware!r} has a "
                f"{preset.source.kind} source; use protocol {preset.protocol} or one of the "
                f"presets: {', '.join(compatible)}",
            )
        source_nm = preset.source.wavelength_nm
        wavelength = link.wavelength_nm if link.wavelength_nm is not None else source_nm
        if abs(wavelength - source_nm) > 30.0:
            raise fail(
                ("links", i, "wavelength_nm"),
                f"the source of preset {link.hardware!r} emits at {source_nm:g} nm, not "
                f"{wavelength:g} nm; choose a preset for that band or drop wavelength_nm",
            )
        attenuation = (
            link.attenuation_db_per_km
            if link.attenuation_db_per_km is not None
            else preset.attenuation_db_per_km
        )
        links.append(
            LinkSpec(
                id=link_id,
                a=link.a,
                b=link.b,
                length_km=round(length, 3),
                straight_km=round(straight, 3),
                attenuation_db_per_km=attenuation,
                extra_loss_db=link.extra_loss_db
                if link.extra_loss_db is not None
                else d.extra_loss_db,
                wavelength_nm=wavelength,
                hardware=link.hardware,
                protocol=protocol,
                block_size=link.block_size or d.block_size,
                eps_sec=link.eps_sec or d.eps_sec,
                eps_cor=link.eps_cor or d.eps_cor,
                entangled_source=link.entangled_source,
                attack=link.attack,
                note=link.note,
            )
        )
    if not math.isfinite(sum(x.length_km for x in links)):
        raise fail(("links",), "non-finite link length")
    return Scenario(
        name=model.name,
        description=model.description,
        defaults=d,
        sites=tuple(sites),
        links=tuple(links),
        source=source,
    )
