"""ONE cache tables for a folder of ALF sessions, with ids that stay the same across rebuilds.

ONE's `make_parquet_db` derives ids from a random namespace, so every rebuild would give new
eids; here eid = uuid3(NAMESPACE, 'lab/subject/date/number') and a dataset's id = uuid3(NAMESPACE,
'<eid>/<relative path>') (ONE accepts only uuid versions 3 and 4, so not uuid5). A
`default_revision` column is added, without which ONE warns on every dataset it loads.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

from neds_framework.api import atomic_path

NAMESPACE = uuid.UUID("6f1e2b6c-4b8a-4f59-9d44-1d2f8c4c7e11")  # fixed for this project: stable ids
# ONE loads every *.pqt at the cache root as a table, so these must be the only ones there.
CACHE_TABLES = ("sessions.pqt", "datasets.pqt")


def session_eid(lab: str, subject: str, date: str, number: str | int) -> str:
    """The eid of `<lab>/Subjects/<subject>/<date>/<number>`, e.g. ('synthlab', 'SYN000', '2024-01-01', 1)."""
    return str(uuid.uuid3(NAMESPACE, f"{lab}/{subject}/{date}/{int(number):03d}"))


def build_one_cache(root: str | Path) -> None:
    """(Re)write sessions.pqt and datasets.pqt at `root`, indexing every session below it.

    Each table is written atomically, so a reader never sees a half-written one.
    """
    from iblutil.io import parquet
    from one.alf.cache import make_parquet_db

    root = Path(root)
    with tempfile.TemporaryDirectory(dir=root, prefix=".one_cache-") as scratch:
        # hash_ids=False: ids are the 'lab/subject/date/number' path strings, replaced below.
        fn_sessions, fn_datasets = make_parquet_db(root, out_dir=scratch, hash_ids=False, hash_files=False)
        sessions, meta_s = parquet.load(fn_sessions)
        datasets, meta_d = parquet.load(fn_datasets)
        # No md5 (None, not ''): local ONE re-hashes a file on every load when a hash is recorded,
        # which dominated preparing a session, and '' makes it log an md5 mismatch instead. ONE
        # still checks file sizes.
        datasets["hash"] = None

        def to_eid(path_id: str) -> str:
            return session_eid(*path_id.split("/")[-4:])

        sessions["id"] = sessions["id"].map(to_eid)
        datasets["eid"] = datasets["eid"].map(to_eid)
        datasets["id"] = [str(uuid.uuid3(NAMESPACE, f"{e}/{r}")) for e, r in zip(datasets["eid"], datasets["rel_path"])]
        datasets["default_revision"] = True
        tables = (sessions.set_index("id"), datasets.set_index(["eid", "id"]))
        for name, table, meta in zip(CACHE_TABLES, tables, (meta_s, meta_d)):
            with atomic_path(root / name) as tmp:
                parquet.save(tmp, table, meta)
