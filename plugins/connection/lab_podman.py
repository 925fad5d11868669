"""lab_podman: containers.podman.podman with pipelining, for the lab's containers.

The collection's connection runs four or five `podman` commands per task (mount, mkdir, chmod,
python, rm) and cannot pipeline: it never passes standard input to `podman exec`. This one runs a
module as one `podman exec -i ... python3` with the module on standard input (pipelining), and
mounts the container's filesystem only when a file is transferred. Everything else is the
collection's. Used by the lab's tests and molecule scenarios, where a task's cost was mostly
podman start-ups.
"""

import shlex

from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.connection import ConnectionBase

from ansible_collections.containers.podman.plugins.connection.podman import Connection as PodmanConnection

DOCUMENTATION = """
    name: lab_podman
    short_description: containers.podman.podman with pipelining (the lab's containers)
    description:
      - Runs tasks in a podman container as containers.podman.podman does, with pipelining (one
        C(podman exec -i) per module) and the container's filesystem mounted only for file
        transfers.
    author: backup operations toolkit
    options:
      remote_addr:
        description: The ID or name of the container.
        default: inventory_hostname
        vars:
          - name: inventory_hostname
          - name: ansible_host
          - name: ansible_podman_host
      remote_user:
        description: The user in the container.
        vars:
          - name: ansible_user
      podman_executable:
        description: Executable for podman.
        default: podman
        vars:
          - name: ansible_podman_executable
        env:
          - name: ANSIBLE_PODMAN_EXECUTABLE
      podman_extra_args:
        description: Extra arguments to pass to the podman command line.
        default: ''
        ini:
          - section: defaults
            key: podman_extra_args
        vars:
          - name: ansible_podman_extra_args
        env:
          - name: ANSIBLE_PODMAN_EXTRA_ARGS
      pipelining:
        description: Pipelining, on by default here.
        type: boolean
        default: true
        vars:
          - name: ansible_pipelining
"""


class Connection(PodmanConnection):
    transport = "lab_podman"
    has_pipelining = True

    def _connect(self):
        # no `podman mount` per task: put_file and fetch_file mount when they need it
        self._connected = True
        return self

    def _ensure_mounted(self):
        if self._mount_point is None and not getattr(self, "_mount_tried", False):
            self._mount_tried = True
            PodmanConnection._connect(self)

    def put_file(self, in_path, out_path):
        self._ensure_mounted()
        return super().put_file(in_path, out_path)

    def fetch_file(self, in_path, out_path):
        self._ensure_mounted()
        return super().fetch_file(in_path, out_path)

    def exec_command(self, cmd, in_data=None, sudoable=False):
        if in_data is None:
            return super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        # the collection's exec_command, with -i: without it podman does not pass the module on stdin
        ConnectionBase.exec_command(self, cmd, in_data=in_data, sudoable=sudoable)
        args = ["exec", "-i"]
        if self.user:
            args.extend(("--user", self.user))
        return self._podman(args, shlex.split(to_native(cmd, errors="surrogate_or_strict")), in_data)
