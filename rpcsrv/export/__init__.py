"""rpcsrv.export: the exported directory (file handles, path safety, leases, READDIR cookies).

Public names: Export (the facade, export.py), NfsError and nfsstat_from_oserror
(errors.py), check_name (contain.py), Obj, DirEntry, FsStat, FsInfo,
PathConf (objects.py), FileLease (files.py). This package stands on
rpcsrv.proto (constants only) and knows nothing of XDR encoding, RPC or sockets.
"""

from .contain import check_name
from .errors import NfsError, nfsstat_from_oserror
from .export import Export
from .files import FileLease
from .handles import FH_MAC_LEN, FH_VERSION
from .objects import DirEntry, FsInfo, FsStat, Obj, PathConf
from .state import StateDirError, default_state_dir, load_or_create_key, prune_state, state_home

__all__ = ["Export", "NfsError", "nfsstat_from_oserror", "check_name", "Obj", "DirEntry", "FsStat",
           "FsInfo", "PathConf", "FileLease", "FH_VERSION", "FH_MAC_LEN", "default_state_dir",
           "load_or_create_key", "StateDirError", "prune_state", "state_home"]
