"""Trust boundaries between the cluster admin and model authors (docs/security.md).

``egress`` (pure): may a credential go to this URL. ``paths`` (pure): do two directories
overlap. ``confine`` (I/O): resolve, create and remove paths without following a symlink out
of a root. ``ownership`` (I/O): which model holds which directory on this node.
"""
