# Sourced by every script and the Makefile: where caches live (outside the repo) and the venv.
LAB_CACHE=${LAB_CACHE:-/var/cache/backup-toolkit}
CONTAINERS_CONF=${CONTAINERS_CONF:-$LAB_CACHE/containers.conf}
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PATH="$TOP/.venv/bin:$PATH"
ANSIBLE_CONFIG="$TOP/ansible.cfg"
export LAB_CACHE CONTAINERS_CONF PATH ANSIBLE_CONFIG TOP
