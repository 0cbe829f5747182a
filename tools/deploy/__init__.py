"""The node's install bundle and its way onto a node.

* :mod:`~tools.deploy.bundle`: ``tools bundle``, the offline bundle (code, model, wheels, units);
* :mod:`~tools.deploy.remote`: ``tools deploy | rollback | releases`` over ssh or into a root;
* :mod:`~tools.deploy.qemu`: ``tools bundle-qemu``, an aarch64 bundle installed and run under
  qemu-user.

The installer that runs on the node itself is ``deploy/install.py`` (standard library only).
"""
