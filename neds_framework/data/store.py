"""The prepared-session store: one HDF5 file holding every prepared session of a dataset.

The prepare stage writes it (`StoreWriter`), checks whether it is still valid for the current
settings (`store_is_current`), and every later stage reads it (`SessionStore`). The on-disk
layout is documented in docs/store-format.md so the file can be read with plain h5py.
"""

from neds_framework.data.store_read import SessionInfo, SessionStore, store_is_current
from neds_framework.data.store_write import SCHEMA_VERSION, StoreWriter, settings_hash

__all__ = ["SCHEMA_VERSION", "SessionInfo", "SessionStore", "StoreWriter", "settings_hash", "store_is_current"]
