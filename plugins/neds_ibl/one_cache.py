"""ONE cache tables for a folder of ALF sessions, with eids that stay the same across rebuilds.

ONE's `make_parquet_db` derives eids from a random namespace, so every rebuild gives new ones;
here eid = uuid3(NAMESPACE, 'lab/subject/date/number') (ONE accepts only uuid versions 3 and 4).
A `default_revision` column is added so ONE does not warn on every load.
"""

from __future__ import annotations

import uuid
from pathlib import Path

NAMESPACE = uuid.UUID("6f1e2b6c-4b8a-4f59-9d44-1d2f8c4c7e11")  # fixed for this project: stable eids


def session_eid(lab: str, subject: str, date: str, number: str | int) -> str:
    return str(uuid.uuid3(NAMESPACE, f"{lab}/{subject}/{date}/{int(number):03d}"))


def build_one_cache(root: str | Path) -> None:
    """(Re)write sessions.pqt and datasets.pqt at `root` for every session below it."""
    from iblutil.io import parquet
    from one.alf.cache import make_parquet_db

    fn_sessions, fn_datasets = make_parquet_db(root, hash_ids=False, hash_files=False)
    sessions, meta_s = parquet.load(fn_sessions)
    datasets, meta_d = parquet.load(fn_datasets)
    # No md5: local ONE re-hashes every file on every load when a hash is recorded, with a slow
    # reader (5.7 of 6.4 s of preparing a default session). File sizes are still checked.
    datasets["hash"] = None

    def to_uuid(path_id: str) -> str:  # ONE's path id is 'lab/subject/date/number'
        return session_eid(*path_id.split("/")[-4:])

    sessions["id"] = sessions["id"].map(to_uuid)
    datasets["id"] = [str(uuid.uuid3(NAMESPACE, f"{e}/{r}")) for e, r in zip(datasets["eid"], datasets["rel_path"])]
    datasets["eid"] = datasets["eid"].map(to_uuid)
    datasets["default_revision"] = True
    parquet.save(fn_sessions, sessions.set_index("id"), meta_s)
    parquet.save(fn_datasets, datasets.set_index(["eid", "id"]), meta_d)
