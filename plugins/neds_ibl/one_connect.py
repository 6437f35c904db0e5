"""Connecting to ONE: one code path for IBL's server (remote) and a cache folder (local)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import attrs

from neds_framework.api import NedsError
from neds_ibl.file_checks import file_problem

OPENALYX_URL = "https://openalyx.internationalbrainlab.org"


@attrs.frozen
class OneSettings:
    """How to reach the data (recipe: data.source.one).

    mode:      'local' reads only `cache_dir` (never the network); 'remote' asks the server and
               caches what it downloads in `cache_dir`.
    cache_dir: the ONE cache folder (required: without it ONE prompts for a server interactively).
    base_url / username / password: the server for remote mode (default: IBL's public OpenAlyx,
               whose public credentials ONE documents; set them for a private Alyx).
    """

    mode: str = "local"
    cache_dir: str = ""
    base_url: str = OPENALYX_URL
    username: str = "intbrainlab"
    password: str = "international"

    def check(self) -> None:
        if self.mode not in ("local", "remote"):
            raise NedsError(f"data.source.one.mode: expected 'local' or 'remote', got {self.mode!r}")
        if not self.cache_dir:
            raise NedsError("data.source.one.cache_dir: required (the ONE cache folder)")


def cache_exists(cache_dir: str | Path) -> bool:
    return (Path(cache_dir) / "sessions.pqt").exists()


def connect_one(settings: OneSettings):
    """An ONE instance; local mode checks the cache exists instead of silently going online."""
    settings.check()
    from one.api import ONE

    # ONE logs file-size and dimension mismatches as multi-line warnings; the source checks the
    # files itself and reports a damaged one in a single line naming it.
    logging.getLogger("one").setLevel(logging.ERROR)

    cache = Path(settings.cache_dir)
    if settings.mode == "local":
        if not cache_exists(cache):
            raise NedsError(
                f"data.source.one.cache_dir: no ONE cache tables (sessions.pqt) in '{cache}'; "
                "generate sessions with `neds-run synth --out DIR` or point it at an existing cache"
            )
        for table in sorted(cache.glob("*.pqt")):  # ONE would fail on a damaged one without saying which
            problem = file_problem(table)
            if problem:
                raise NedsError(
                    f"{table}: {problem}; the ONE cache tables are damaged: regenerate the cache "
                    "(neds-run synth --out DIR) or download it again"
                )
        return ONE(cache_dir=str(cache), mode="local")
    try:
        return ONE(
            base_url=settings.base_url,
            username=settings.username,
            password=settings.password,
            cache_dir=str(cache),
            silent=True,
        )
    except Exception as exc:  # ONE raises many types when the server is unreachable
        raise NedsError(f"cannot reach the ONE server {settings.base_url}: {type(exc).__name__}: {exc}") from exc


_PROBE = re.compile(r"^alf/(probe\d\d)(/|$)")


def probe_names(one, eid: str) -> list[str]:
    """Spike-sorted probes of a session, from its collections (works in local and remote mode)."""
    names = {m.group(1) for c in one.list_collections(eid) if (m := _PROBE.match(str(c)))}
    return sorted(names)
